"""Scale-out on torch.distributed (launched by torchrun): who this process is, how work is split, how results meet."""

from saeseeds.distributed.partition import partition_by_cost
from saeseeds.distributed.world import World, current_world, launched, map_gathered, spread_pairs

__all__ = ["World", "current_world", "launched", "map_gathered", "partition_by_cost", "spread_pairs"]
