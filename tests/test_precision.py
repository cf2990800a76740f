"""train.precision: auto picks bf16 only where the hardware computes it natively."""
import pytest
import torch

from pipeline.scoring import scorer as scoring

CPU = torch.device("cpu")


@pytest.fixture
def cpu_with(monkeypatch):
    """Pretend the CPU has these feature flags and oneDNN does / does not run bf16."""
    def fake(flags: set[str], onednn: bool):
        monkeypatch.setattr(scoring, "_cpu_flags", lambda: set(flags))
        monkeypatch.setattr(scoring, "_onednn_bf16", lambda: onednn)
    return fake


@pytest.mark.parametrize("flags", [{"avx2", "avx512f", "avx512_bf16"}, {"avx2", "amx_bf16", "amx_tile"}])
def test_auto_is_bf16_on_a_cpu_with_native_bf16(cpu_with, flags):
    cpu_with(flags, onednn=True)
    precision, reason = scoring.resolve_precision("auto", CPU)
    assert precision == "bf16"
    assert "BF16" in reason


def test_auto_is_fp32_on_an_avx2_cpu(cpu_with):
    cpu_with({"avx", "avx2", "fma"}, onednn=False)
    precision, reason = scoring.resolve_precision("auto", CPU)
    assert precision == "fp32"
    assert "no AMX or AVX512_BF16" in reason


def test_auto_is_fp32_on_avx512_without_bf16_instructions(cpu_with):
    # oneDNN emulates bf16 on plain AVX-512, more slowly than fp32
    cpu_with({"avx2", "avx512f", "avx512bw"}, onednn=True)
    assert scoring.resolve_precision("auto", CPU)[0] == "fp32"


def test_auto_is_fp32_when_onednn_is_held_to_avx2(cpu_with):
    # ONEDNN_MAX_CPU_ISA=AVX2 on a CPU that has the instructions
    cpu_with({"avx2", "avx512_bf16"}, onednn=False)
    assert scoring.resolve_precision("auto", CPU)[0] == "fp32"


def test_an_explicit_choice_is_kept_and_a_slow_one_says_so(cpu_with):
    cpu_with({"avx2"}, onednn=False)
    assert scoring.resolve_precision("fp32", CPU)[0] == "fp32"
    precision, reason = scoring.resolve_precision("bf16", CPU)
    assert precision == "bf16" and "slow here" in reason


def test_a_bf16_model_scores_in_fp32_where_bf16_is_not_native(cpu_with):
    cpu_with({"avx2"}, onednn=False)
    assert scoring.scoring_precision("bf16", CPU) == "fp32"
    cpu_with({"avx512_bf16"}, onednn=True)
    assert scoring.scoring_precision("bf16", CPU) == "bf16"
    assert scoring.scoring_precision("fp32", CPU) == "fp32"


def test_this_machine_gives_an_answer_with_a_reason():
    precision, reason = scoring.resolve_precision("auto", CPU)
    assert precision in ("bf16", "fp32") and reason.startswith("auto: ")
