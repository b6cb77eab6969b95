"""The throughput bench on tiny sizes: structure and positivity of its numbers (no timing thresholds)."""
import json

from study.bench import main


def test_quick_bench_reports_study_and_reference_rates(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["--quick", "--device", "cpu", "--threads", "1", "--resolution", "32", "--backbones",
                 "mobilenetv2_100", "--datasets", "neu_steel_defects,flowers5", "--fe-images", "48",
                 "--ref-batch", "4", "--ref-iters", "2", "--warmup-iters", "1", "--ft-ks", "2", "--out",
                 str(out)]) == 0
    table = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["device"]["type"] == "cpu" and report["device"]["name"].startswith("CPU: ")
    assert report["device"]["name"] in table and "mobilenetv2_100" in table and "before / after" in table
    assert report["targets_judged"] is False and report["targets"] == {"ft": 0.85}
    (entry,) = report["results"]
    assert entry["backbone"] == "mobilenetv2_100" and entry["resolution"] == 32
    for kind in ("fe", "ft"):
        item = entry[kind]
        assert item["study"]["images_per_s"] > 0 and item["reference"]["images_per_s"] > 0
        assert item["ratio"] > 0 and item["meets_target"] is None
        assert item["study"]["warmup_s"] >= 0 and item["reference"]["warmup_s"] > 0
        assert item["study"]["joules_per_image"] > 0
        reference = item["reference"]  # timed before and after the study paths, pooled
        assert reference["iterations"] == 2 * 2  # --ref-iters 2 (FT: at least 2), twice
        low, high = sorted((reference["images_per_s_before"], reference["images_per_s_after"]))
        assert low <= reference["images_per_s"] <= high
    fe = entry["fe"]["study"]
    assert [d["dataset"] for d in fe["datasets"]] == ["neu_steel_defects", "flowers5"]
    assert fe["images"] == (6 * 8 + 6 * 2) + (5 * 9 + 5 * 2)  # class-balanced caps of 48 train, 12 test
    assert fe["end_to_end_images_per_s"] <= fe["images_per_s"]
    ft = entry["ft"]["study"]
    assert ft["dataset"] == "neu_steel_defects" and [run["k"] for run in ft["runs"]] == [2]
    assert ft["runs"][0]["trained_images"] > 0 and ft["images"] > ft["runs"][0]["trained_images"]
    assert entry["ft"]["reference_images_per_s"] == entry["ft"]["reference"]["same_mix_images_per_s"]
