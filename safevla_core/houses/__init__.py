"""Procedural houses in ProcTHOR's JSON schema: generation, splits, files, 2-D floor plans."""

from safevla_core.houses.floor_plan import (
    FloorPlan,
    FreeSpaceGrid,
    Obstacle2D,
    door_probe_points,
    footprint_free,
    free_space_grid,
    house_floor_plan,
    house_floor_rects,
    house_obstacle_rects,
    iter_objects,
    object_footprint,
    object_size_map,
    wall_openings,
)
from safevla_core.houses.generator import generate_house, house_summary
from safevla_core.houses.io import load_house_file, read_houses_jsonl_gz, write_houses_jsonl_gz
from safevla_core.houses.schema import (
    map_to_thor_position,
    map_yaw_to_thor_yaw,
    thor_size_to_map_size,
    thor_to_map_position,
    thor_yaw_to_map_yaw,
    validate_house,
)
from safevla_core.houses.splits import house_id, load_house, load_split, split_seeds

__all__ = [
    "FloorPlan",
    "FreeSpaceGrid",
    "Obstacle2D",
    "door_probe_points",
    "footprint_free",
    "free_space_grid",
    "generate_house",
    "house_floor_plan",
    "house_floor_rects",
    "house_id",
    "house_obstacle_rects",
    "house_summary",
    "iter_objects",
    "load_house",
    "load_house_file",
    "load_split",
    "map_to_thor_position",
    "map_yaw_to_thor_yaw",
    "object_footprint",
    "object_size_map",
    "read_houses_jsonl_gz",
    "split_seeds",
    "thor_size_to_map_size",
    "thor_to_map_position",
    "thor_yaw_to_map_yaw",
    "validate_house",
    "wall_openings",
    "write_houses_jsonl_gz",
]
