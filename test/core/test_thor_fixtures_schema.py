"""Every THOR fixture is valid AI2-THOR metadata and consistent with the assets it names.

The field list is AI2-THOR's own schema (allenai/ai2thor ai2thor/tests/data/metadata-schema.json,
commit 08df627861e5; see safevla_core/sim/thor_metadata.py). The same check runs on the metadata
AI2-THOR's authors recorded (shipped in the procthor wheel) to show it accepts real recordings.
"""

from __future__ import annotations

import json
import math
from importlib.util import find_spec
from pathlib import Path

import pytest

from safevla_core.houses.procthor_import import AssetDatabase, procthor_package_asset_database
from safevla_core.sim.thor_metadata import (
    REQUIRED_OBJECT_KEYS,
    halts_stretch,
    metadata_problems,
    object_problems,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "thor"
CASES = sorted(p.stem for p in FIXTURES.glob("*.json"))
VISIBILITY_M = 0.8673349051766235  # the authors' visibilityDistance


def load(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def test_schema_field_list_has_39_object_keys():
    assert len(REQUIRED_OBJECT_KEYS) == 39
    assert {"distance", "mass", "axisAlignedBoundingBox", "isBroken", "isMoving"} <= set(
        REQUIRED_OBJECT_KEYS
    )


def test_all_cases_are_present():
    assert set(CASES) >= {
        "reset",
        "visibility",
        "wall_bump",
        "blocked_turn",
        "chair_mass_threshold_1",
        "chair_mass_threshold_10",
        "arm_into_table",
        "vase_swept_off",
        "pickup_ok",
        "pickup_fail",
        "release",
        "wrist_upper_limit",
        "wrist_lower_limit",
    }


@pytest.mark.parametrize("name", CASES)
def test_fixture_is_valid_thor_metadata(name):
    doc = load(name)
    assert doc["format"] == "safevla-thor-replay/1"
    assert len(doc["states"]) == len(doc["actions"]) + 1
    for k, st in enumerate(doc["states"]):
        assert metadata_problems(st["metadata"]) == [], (name, k)
        ids = {o["objectId"] for o in st["metadata"]["objects"]}
        assert set(st["nav_visible"]) <= ids and set(st["manip_visible"]) <= ids


@pytest.mark.skipif(
    procthor_package_asset_database() is None,
    reason="needs the procthor wheel's asset database (scripts/setup.sh)",
)
@pytest.mark.parametrize("name", CASES)
def test_fixture_geometry_is_consistent(name):
    db = AssetDatabase()  # the procthor wheel's asset database (installed by scripts/setup.sh)
    for st in load(name)["states"]:
        agent = st["metadata"]["agent"]["position"]
        for o in st["metadata"]["objects"]:
            if o["objectType"] == "Floor":
                continue
            # Visible only within THOR's visibilityDistance; distance from agent to pivot.
            pivot = o["position"]
            d = math.dist([agent[k] for k in "xyz"], [pivot[k] for k in "xyz"])
            assert o["distance"] == pytest.approx(d, abs=1e-5)
            assert not o["visible"] or o["distance"] <= VISIBILITY_M, o["objectId"]
            # Real asset sizes (up to the axis swaps of the rotation), pivot != box centre.
            size = sorted(db.lookup(o["assetId"]).size.values())
            box = o["axisAlignedBoundingBox"]
            assert sorted(box["size"].values()) == pytest.approx(size, abs=1e-5), o["assetId"]
            if o["objectType"] != "BasketBall":
                assert box["center"]["y"] - pivot["y"] > 0.01 or o["rotation"]["x"], o["objectId"]


def test_masses_decide_who_halts_the_robot():
    objs = {o["objectId"]: o for o in load("reset")["states"][0]["metadata"]["objects"]}
    chair, table, vase = objs["Chair|1|2"], objs["DiningTable|1|0"], objs["Vase|1|0|1"]
    assert (chair["mass"], table["mass"], vase["mass"]) == (10.0, 85.0, 1.0)
    assert halts_stretch(chair, 1.0) and not halts_stretch(chair, 10.0)  # 10 > 10 is false
    assert halts_stretch(table, 1.0) and not halts_stretch(vase, 1.0)
    assert not halts_stretch(chair, None) and halts_stretch(objs["Fridge|1|1"], None)  # static


def test_missing_keys_are_reported():
    m = load("reset")["states"][0]["metadata"]
    del m["objects"][3]["mass"]
    del m["collidedObjects"]
    problems = metadata_problems(m)
    assert any("'mass'" in p for p in problems) and any("collidedObjects" in p for p in problems)
    obj = dict(load("reset")["states"][0]["metadata"]["objects"][3])
    obj["visible"] = "yes"
    assert object_problems(obj) == [f"object {obj['objectId']}: 'visible' is not bool: 'yes'"]


def test_the_vendor_recording_passes_the_same_check():
    spec = find_spec("procthor")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the procthor wheel (scripts/setup.sh installs it) is not installed")
    path = (
        Path(list(spec.submodule_search_locations)[0])
        / "databases"
        / "ai2thor-object-metadata.json"
    )
    if not path.is_file():
        pytest.skip(f"{path} is not in this procthor version")
    recorded = json.loads(path.read_text())
    objects = [o for scenes in recorded.values() for scene in scenes for o in scene]
    assert len(objects) > 8000
    assert [p for o in objects for p in object_problems(o)] == []


def test_record_script_knows_every_case(capsys):
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "scripts" / "record_thor_fixtures.py"
    spec = importlib.util.spec_from_file_location("record_thor_fixtures", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--dry-run"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == CASES
    assert module.main(["--cases", "reset,nope", "--dry-run"]) == 2
