// Latent pages: filter each configuration's list by text and stability group; check every image decoded.
(function () {
  document.querySelectorAll(".latents").forEach(function (box) {
    var input = box.querySelector(".lsearch"), group = box.querySelector(".lgroup");
    var count = box.querySelector(".lcount"), items = box.querySelectorAll("details.latent");
    function apply() {
      var q = input.value.trim().toLowerCase(), g = group.value, shown = 0;
      items.forEach(function (it) {
        var ok = (!q || it.getAttribute("data-search").indexOf(q) >= 0) && (!g || it.getAttribute("data-group") === g);
        it.hidden = !ok;
        if (ok) { shown += 1; }
      });
      count.textContent = shown + " of " + items.length + " latents";
    }
    input.addEventListener("input", apply);
    group.addEventListener("change", apply);
  });
  function checkImages() {
    document.querySelectorAll("img").forEach(function (img) {
      if (img.complete && img.naturalWidth === 0 && !img.hasAttribute("data-checked")) {
        img.setAttribute("data-checked", "broken");
        window.saeseedsError("image failed: " + (img.alt || "?"));
      }
    });
    document.documentElement.setAttribute("data-images", String(document.images.length));
    document.documentElement.setAttribute("data-ready", "1");
  }
  if (document.readyState === "complete") { checkImages(); } else { window.addEventListener("load", checkImages); }
})();
