"""The plan printed before heavy work: teacher set-up costs, time formatting, the throw-away step timing."""

import torch

from kd_trainer.losses import DistillLoss
from kd_trainer.models.student import build_student
from kd_trainer.plan import Plan, fmt_seconds, measure_step_seconds, teacher_ready, teacher_setup_lines


def test_absent_maxim_teacher_plans_the_venv_and_the_conversion() -> None:
    assert not teacher_ready("maxim-deblur")  # KD_CACHE_DIR is an empty tmp folder
    lines, seconds = teacher_setup_lines("maxim-deblur")
    text = "\n".join(lines)
    assert (
        "absent" in text and "1.6 GB" in text and "~8 min" in text and "kd-data teacher maxim-deblur" in text
    )
    assert seconds >= 8 * 60
    lines, seconds = teacher_setup_lines("onnx:/nowhere/t.onnx")
    assert "MISSING" in lines[0] and seconds == 0


def test_plan_render_and_step_timing_leave_the_model_alone() -> None:
    assert [fmt_seconds(s) for s in (0.5, 42, 450, 7200)] == ["0.50 s", "42 s", "7.5 min", "2.0 h"]
    plan = Plan()
    plan.add("photos: 2 images")
    plan.add("training: 10 steps x 6 s", "training", 60.0)
    assert plan.render().splitlines() == [
        "plan (estimates; total ~60 s before validation):",
        "  photos: 2 images",
        "  training: 10 steps x 6 s -> ~60 s",
    ]
    model = build_student("runet-p")
    before = [p.detach().clone() for p in model.parameters()]
    rng_state = torch.get_rng_state()
    seconds = measure_step_seconds(model, DistillLoss(0.8, 0.0), batch=2, crop=32, device=torch.device("cpu"))
    assert seconds > 0
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert torch.equal(rng_state, torch.get_rng_state())
