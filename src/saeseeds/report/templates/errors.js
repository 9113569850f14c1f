// Count script errors and images that fail to decode on <html data-errors>, so a headless browser can check.
(function () {
  var root = document.documentElement;
  window.saeseedsError = function (what) {
    root.setAttribute("data-errors", String(Number(root.getAttribute("data-errors") || 0) + 1));
    root.setAttribute("data-error-messages", (root.getAttribute("data-error-messages") || "") + String(what) + "\n");
  };
  window.addEventListener("error", function (ev) {
    var t = ev.target;
    if (t && t.tagName === "IMG") { window.saeseedsError("image failed: " + (t.alt || "?")); }
    else { window.saeseedsError("script error: " + ev.message); }
  }, true);
})();
