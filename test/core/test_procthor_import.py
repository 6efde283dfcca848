"""ProcTHOR / Objaverse house import into our schema and the embedded simulator's scene.

test/fixtures/procthor_house.json is a two-room house in ProcTHOR-10k's form, written by us (no
"objectType"/"boundingBox"; genuine THOR asset ids; walls as ProcTHOR writes them:
``[bottom-start, bottom-end, top-start, top-end]``; a door and a window hole).
test/fixtures/procthor_asset_database.json gives those assets in ProcTHOR's asset-database format
with our own round sizes (not THOR's measurements).
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import numpy as np
import pytest

from safevla_core.houses.generator import generate_house
from safevla_core.houses.procthor_import import (
    THOR_TYPE_TO_CATEGORY,
    AssetDatabase,
    canonical_object_type,
    cost_category,
    export_procthor_house,
    import_procthor_house,
    iter_house_objects,
    load_house_file_any,
    main,
    needs_import,
    procthor_package_asset_database,
    type_from_category,
)
from safevla_core.objects import OBJECT_TYPES
from safevla_core.sim.scene import house_scene_xml, parse_house

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
DB = FIXTURES / "procthor_asset_database.json"
UID = "0123456789abcdef0123456789abcdef"


@pytest.fixture()
def raw_house() -> dict:
    return json.loads((FIXTURES / "procthor_house.json").read_text())


@pytest.fixture()
def imported(raw_house) -> dict:
    return import_procthor_house(raw_house, AssetDatabase(DB))


def test_fixture_is_in_procthor_form(raw_house):
    objs = list(iter_house_objects(raw_house["objects"]))
    assert len(objs) == 10 and needs_import(raw_house)
    assert not any("objectType" in o or "boundingBox" in o for o in objs)


def test_every_object_gets_type_and_size_from_the_database(raw_house, imported):
    objs = {o["id"]: o for o in iter_house_objects(imported["objects"])}
    assert len(objs) == 10 and not needs_import(imported)
    assert objs["Vase|1|0|1"]["objectType"] == "Vase"  # a child of the table
    assert objs["Vase|1|0|1"]["boundingBox"] == {"x": 0.15, "y": 0.3, "z": 0.15}
    assert objs["DiningTable|1|0"]["boundingBox"] == {"x": 1.2, "y": 0.8, "z": 0.8}
    # THOR names mapped through THOR_TYPE_TO_CATEGORY, original kept.
    assert (objs["WineBottle|1|0|2"]["objectType"], objs["WineBottle|1|0|2"]["thorObjectType"]) == (
        "Bottle",
        "WineBottle",
    )
    assert objs["BasketBall|2|2"]["objectType"] == "Basketball"
    # A THOR type outside the catalogue loads as a generic object.
    assert objs["Chair|1|2"]["objectType"] == "Chair" and "Chair" not in OBJECT_TYPES
    # The house's "kinematic" wins over the database's primaryProperty (table: "Moveable").
    assert objs["DiningTable|1|0"]["kinematic"] is True
    assert "objectType" not in raw_house["objects"][0]  # input untouched


def test_kinematic_comes_from_primary_property_when_the_house_omits_it(raw_house):
    for o in iter_house_objects(raw_house["objects"]):
        o.pop("kinematic")
    objs = {
        o["id"]: o
        for o in iter_house_objects(import_procthor_house(raw_house, AssetDatabase(DB))["objects"])
    }
    assert objs["Fridge|1|1"]["kinematic"] is True  # "Static"
    assert objs["Chair|1|2"]["kinematic"] is False  # "Moveable"


def test_cost_categories_through_the_one_table():
    assert canonical_object_type("ButterKnife") == "Knife"
    assert cost_category("ButterKnife") == "hazardous"
    assert cost_category("WineBottle") == "fragile"
    assert cost_category("Vase") == "fragile"
    assert cost_category("Wall") == "structural" and cost_category("Floor") == "structural"
    assert cost_category("Chair") == "generic" and cost_category("Apple") == "generic"
    # Every alias lands on a catalogue type.
    assert set(THOR_TYPE_TO_CATEGORY.values()) <= set(OBJECT_TYPES)
    assert type_from_category("wine glass") == "WineGlass"
    assert type_from_category("butter_knife") == "Knife"
    assert type_from_category("garden gnome") == "GardenGnome"


def test_imported_house_builds_the_scene(imported):
    import mujoco

    layout = parse_house(imported)
    sizes = {o.object_id: o.size_m for o in layout.objects}
    # THOR size (x, y, z) = (0.02, 0.03, 0.3) -> map (x, z, y) = (0.02, 0.3, 0.03).
    np.testing.assert_allclose(sizes["Knife|1|0|3"], [0.02, 0.3, 0.03])
    walls = {w.wall_id: w for w in layout.walls}
    # Door hole 1.0..2.0 m along both sides of the shared wall, up to 2.1 m.
    assert walls["wall|1|4.00|0.00|4.00|3.00"].holes == ((1.0, 2.0, 0.0, 2.1),)
    assert walls["wall|2|4.00|0.00|4.00|3.00"].holes == ((1.0, 2.0, 0.0, 2.1),)
    # Window 0.8..1.8 m high on the east wall; its exterior wall1 is not a house wall.
    assert walls["wall|2|7.00|0.00|7.00|3.00"].holes == ((1.0, 2.0, 0.8, 1.8),)
    model = mujoco.MjModel.from_xml_string(house_scene_xml(imported))
    assert model.nbody == 1 + 10  # world + one body per object
    table = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "obj_0")
    np.testing.assert_allclose(model.geom_size[model.body_geomadr[table]], [0.6, 0.4, 0.4])


def test_older_door_bounding_box_form_becomes_a_hole_polygon(raw_house):
    door = raw_house["doors"][0]
    hole = door.pop("holePolygon")
    door["boundingBox"] = {"min": hole[0], "max": hole[1]}
    out = import_procthor_house(raw_house, AssetDatabase(DB))
    assert out["doors"][0]["holePolygon"] == hole


def test_generated_house_round_trips_through_procthor_form():
    ours = generate_house(3)
    procthor, database = export_procthor_house(ours)
    assert not any(
        "objectType" in o or "boundingBox" in o for o in iter_house_objects(procthor["objects"])
    )
    back = import_procthor_house(procthor, AssetDatabase(_write(database)))
    assert back == ours
    assert house_scene_xml(back) == house_scene_xml(ours)
    # Our own houses pass the importer unchanged (same code path, no database needed).
    assert import_procthor_house(ours, AssetDatabase("/nonexistent.json")) == ours


def _write(obj, name: str = "db.json") -> Path:
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="safevla_db_"))
    path = folder / name
    path.write_text(json.dumps(obj))
    return path


def test_missing_asset_id_is_named(raw_house):
    raw_house["objects"][1]["assetId"] = "Fridge_999"
    with pytest.raises(KeyError, match="Fridge_999.*procthor_asset_database.json"):
        import_procthor_house(raw_house, AssetDatabase(DB))


def test_missing_database_says_how_to_provide_one(raw_house, monkeypatch):
    monkeypatch.delenv("SAFEVLA_ASSET_DATABASE", raising=False)
    with pytest.raises(FileNotFoundError, match="nope.json"):
        import_procthor_house(raw_house, AssetDatabase("/tmp/nope.json"))


def _objaverse_house(raw_house: dict) -> dict:
    raw_house["objects"].append(
        {
            "id": "Objaverse|1|9",
            "assetId": UID,
            "kinematic": False,
            "position": {"x": 1.0, "y": 0.2, "z": 2.5},
            "rotation": {"x": 0, "y": 0, "z": 0},
        }
    )
    return raw_house


def test_objaverse_ids_need_objathor_annotations(raw_house, monkeypatch, tmp_path):
    monkeypatch.delenv("OBJAVERSE_ANNOTATIONS_PATH", raising=False)
    monkeypatch.setenv("OBJAVERSE_DATA_DIR", str(tmp_path))
    house = _objaverse_house(raw_house)
    expected = tmp_path / "2023_07_28" / "annotations.json.gz"
    with pytest.raises(FileNotFoundError, match=f"{UID}.*{expected}.*OBJAVERSE_DATA_DIR"):
        import_procthor_house(house, AssetDatabase(DB))
    # objathor's annotation format: uid -> {category, thor_metadata.assetMetadata.boundingBox}.
    expected.parent.mkdir()
    box = {"min": {"x": -0.1, "y": 0.0, "z": -0.05}, "max": {"x": 0.1, "y": 0.4, "z": 0.05}}
    with gzip.open(expected, "wt") as f:
        json.dump(
            {
                UID: {
                    "category": "wine glass",
                    "thor_metadata": {
                        "assetMetadata": {"boundingBox": box, "primaryProperty": "CanPickup"}
                    },
                }
            },
            f,
        )
    out = import_procthor_house(house, AssetDatabase(DB))
    obj = out["objects"][-1]
    assert obj["objectType"] == "WineGlass" and cost_category(obj["objectType"]) == "fragile"
    assert obj["boundingBox"] == pytest.approx({"x": 0.2, "y": 0.4, "z": 0.1})  # max - min
    other = "f" * 32
    house["objects"][-1]["assetId"] = other
    with pytest.raises(KeyError, match=other):
        import_procthor_house(house, AssetDatabase(DB))


def test_house_files_load_as_json_and_jsonl_gz(raw_house, imported, tmp_path):
    one = tmp_path / "house.json"
    one.write_text(json.dumps(raw_house))
    assert load_house_file_any(one, AssetDatabase(DB)) == imported
    many = tmp_path / "houses.jsonl.gz"
    with gzip.open(many, "wt") as f:
        f.write(json.dumps(raw_house) + "\n" + json.dumps(generate_house(1)) + "\n")
    houses = load_house_file_any(many, AssetDatabase(DB))
    assert houses[0] == imported and houses[1] == generate_house(1)
    bad = tmp_path / "bad.jsonl.gz"
    with gzip.open(bad, "wt") as f:
        f.write("{not json\n")
    with pytest.raises(ValueError, match="bad.jsonl.gz:1"):
        load_house_file_any(bad, AssetDatabase(DB))


def test_command_line_writes_an_importable_house(tmp_path, imported, capsys):
    out = tmp_path / "imported.json"
    assert (
        main([str(FIXTURES / "procthor_house.json"), "--asset-db", str(DB), "--out", str(out)]) == 0
    )
    assert json.loads(out.read_text()) == imported
    assert main([str(FIXTURES / "procthor_house.json"), "--asset-db", "/tmp/nope.json"]) == 2
    assert "nope.json" in capsys.readouterr().err


def test_imported_house_renders_both_cameras(imported):
    os.environ.setdefault("MUJOCO_GL", "egl")
    from safevla_core.sim.mujoco_backend import MujocoBackend

    backend = MujocoBackend(width=96, height=64)
    try:
        state = backend.reset(imported, seed=0)
        frames = backend.render()
    finally:
        backend.close()
    # metadata.agent THOR (5.5, 0.95, 1.5) yaw 270 -> map (5.5, 1.5), heading 90 - 270 = +-180.
    np.testing.assert_allclose(state.robot_pose[:2], [5.5, 1.5])
    assert abs(state.robot_pose[2]) == pytest.approx(np.pi)
    for img in frames.values():
        assert img.shape == (64, 96, 3) and img.dtype == np.uint8 and img.std() > 5


def test_real_procthor_asset_database_when_installed(raw_house):
    path = procthor_package_asset_database()
    if path is None:
        pytest.skip("the procthor package (its asset database) is not installed")
    out = import_procthor_house(raw_house, AssetDatabase(path))
    table = out["objects"][0]
    assert table["objectType"] == "DiningTable"
    assert all(0.5 < table["boundingBox"][k] < 1.0 for k in "xyz")  # a ~0.7 m table
