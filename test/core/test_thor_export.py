"""Our procedural houses exported for AI2-THOR: real asset ids, materials, proceduralParameters.

Checked against ProcTHOR's own databases in the procthor wheel (scripts/setup.sh installs it with
--no-deps): procthor/databases/asset-database.json and material-database.json.
"""

from __future__ import annotations

import json

import pytest

from safevla_core.cli import main
from safevla_core.houses.generator import generate_house
from safevla_core.houses.procthor_import import (
    AssetDatabase,
    import_procthor_house,
    procthor_package_asset_database,
)
from safevla_core.houses.thor_export import (
    ThorExportError,
    export_house_for_thor,
    load_materials,
    nearest_asset,
    unknown_asset_ids,
)

pytestmark = pytest.mark.skipif(
    procthor_package_asset_database() is None,
    reason="needs the procthor wheel's databases (scripts/setup.sh)",
)


@pytest.fixture(scope="module")
def house() -> dict:
    return generate_house(6)  # has an Oven and a Saw: no THOR assets for them


def test_our_asset_ids_are_mostly_not_thor_assets(house):
    # The generator writes "<Type>_1"; e.g. Vase_1 and Sofa_1 do not exist in ProcTHOR's database.
    assert unknown_asset_ids(house)
    assert "Vase_1" in unknown_asset_ids({"objects": [{"assetId": "Vase_1"}]})


def test_export_refuses_types_without_thor_assets(house):
    with pytest.raises(ThorExportError, match=r"Oven\|1\|0 \(Oven\).*Saw\|0\|7 \(Saw\)"):
        export_house_for_thor(house)


def test_exported_house_has_only_real_assets_and_what_create_house_reads(house):
    out = export_house_for_thor(house, drop_unavailable=True)
    assert unknown_asset_ids(out) == []
    assert out["metadata"]["droppedObjects"] == ["Oven|1|0", "Saw|0|7"]
    assert house["objects"][0]["assetId"].endswith("_1")  # input untouched
    mats = load_materials()
    assert all(r["floorMaterial"]["name"] in mats["Wood"] for r in out["rooms"])
    assert all(w["material"]["name"] in mats["Wall"] for w in out["walls"])
    pp = out["proceduralParameters"]
    assert (pp["floorColliderThickness"], pp["receptacleHeight"], pp["skyboxId"]) == (
        1.0,
        0.7,
        "Sky1",
    )
    assert pp["ceilingMaterial"] == {"name": "PureWhite"}
    # One directional light plus one point light per room, 0.2 m under the 2.5 m ceiling.
    assert [lt["type"] for lt in pp["lights"]] == ["directional"] + ["point"] * len(out["rooms"])
    assert pp["lights"][1]["position"]["y"] == pytest.approx(2.3)
    assert out["metadata"]["agent"]["position"]["y"] == 0.95
    assert not any(k in o for o in out["objects"] for k in ("objectType", "boundingBox"))
    # It imports back with the real database: types and sizes are THOR's.
    imported = import_procthor_house(out, AssetDatabase())
    assert len(imported["objects"]) == len(house["objects"]) - 2


def test_objects_keep_their_bottom_and_stand_on_their_parent(house):
    out = {o["id"]: o for o in export_house_for_thor(house, drop_unavailable=True)["objects"]}
    ours = {o["id"]: o for o in house["objects"]}
    db = AssetDatabase()
    for oid, o in out.items():
        h_new = db.lookup(o["assetId"]).size["y"]
        bottom_new = o["position"]["y"] - h_new / 2
        src = ours[oid]
        parent = src.get("parentReceptacle")
        if parent is None:
            bottom_old = src["position"]["y"] - src["boundingBox"]["y"] / 2
            assert bottom_new == pytest.approx(bottom_old, abs=1e-3), oid
        else:
            p = out[parent]
            top = p["position"]["y"] + db.lookup(p["assetId"]).size["y"] / 2
            assert bottom_new == pytest.approx(top, abs=1e-3), oid
        assert (o["position"]["x"], o["position"]["z"]) == (
            src["position"]["x"],
            src["position"]["z"],
        )


def test_nearest_asset_by_size():
    entries = [
        {"assetId": "B", "boundingBox": {"x": 1.0, "y": 1.0, "z": 1.0}},
        {"assetId": "A", "boundingBox": {"x": 0.5, "y": 0.5, "z": 0.5}},
        {"assetId": "C", "boundingBox": {"x": 0.6, "y": 0.4, "z": 0.5}},
    ]
    # |0.55-0.5|+|0.45-0.5|+0 = 0.1 for A and C: the tie goes to the smaller id.
    assert nearest_asset({"x": 0.55, "y": 0.45, "z": 0.5}, entries)["assetId"] == "A"
    assert nearest_asset({"x": 0.9, "y": 1.0, "z": 1.0}, entries)["assetId"] == "B"


def test_cli_house_export_thor(tmp_path, capsys):
    out = tmp_path / "house.json"
    args = ["house", "--split", "test", "--house-index", "0", "--export-thor"]
    assert main(args + ["--drop-unavailable", "--out", str(out)]) == 0
    exported = json.loads(out.read_text())
    assert unknown_asset_ids(exported) == [] and "proceduralParameters" in exported
    assert exported["metadata"]["droppedObjects"]  # this house has hazards THOR lacks
    assert main(args + ["--out", str(tmp_path / "refused.json")]) == 2
    assert "no THOR asset" in capsys.readouterr().err
    assert not (tmp_path / "refused.json").exists()
