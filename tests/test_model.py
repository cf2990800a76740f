import math

import pytest
import torch
import torch.nn.functional as F

from model import asoftmax_loss, bonafide_score, build_model, count_parameters, margin_lambda, psi
from model.asoftmax import AngularOutput, cos_m_theta
from pipeline.settings import ModelSettings


def test_default_model_has_about_a_million_parameters_and_scores_each_utterance():
    model = build_model(ModelSettings())
    assert 0.95e6 < count_parameters(model) < 1.05e6
    out = model(torch.randn(3, 1, 45, 64))
    assert out.cos_theta.shape == (3, 2) and out.psi_theta.shape == (3, 2) and out.norm.shape == (3,)
    assert bonafide_score(out).shape == (3,)


def test_ablation_variants_build():
    plain = build_model(ModelSettings(arch="res2net", head="softmax"))
    assert count_parameters(plain) < count_parameters(build_model(ModelSettings()))
    two_channel = build_model(ModelSettings(f0_channel=True))
    assert two_channel(torch.randn(2, 2, 45, 40)).cos_theta.shape == (2, 2)


@pytest.mark.parametrize("theta", [0.0, math.pi / 8, math.pi / 5, math.pi / 3, math.pi / 2, 2.5])
def test_cos_m_theta_matches_its_definition(theta):
    c = torch.tensor([math.cos(theta)], dtype=torch.float64)
    assert cos_m_theta(c, 4).item() == pytest.approx(math.cos(4 * theta), abs=1e-9)


def test_psi_hand_computed_values_and_monotone():
    def psi_at(theta):
        return psi(torch.tensor([math.cos(theta)], dtype=torch.float64), 4).item()
    assert psi_at(0.0) == pytest.approx(1.0)
    # theta = pi/3: k = floor(4/3) = 1, psi = -cos(4 pi / 3) - 2 = 0.5 - 2
    assert psi_at(math.pi / 3) == pytest.approx(-1.5)
    assert psi_at(math.pi) == pytest.approx(-7.0)
    thetas = torch.linspace(0, math.pi, 2001, dtype=torch.float64)
    values = psi(torch.cos(thetas), 4)
    assert torch.all(values[1:] <= values[:-1] + 1e-9)


def test_margin_lambda_schedule():
    assert margin_lambda(0) == 1500
    assert margin_lambda(10) == 750
    assert margin_lambda(100000) == 5


def test_asoftmax_loss_mixes_psi_into_the_target_logit_only():
    cos = torch.tensor([[0.2, 0.6]], dtype=torch.float64)
    psi_t = psi(cos, 4)
    out = AngularOutput(cos, psi_t, torch.tensor([3.0], dtype=torch.float64))
    lam = 4.0
    target = torch.tensor([1])
    expected_logits = torch.tensor([[0.2 * 3, (lam * 0.6 + psi_t[0, 1].item()) / (1 + lam) * 3]], dtype=torch.float64)
    assert asoftmax_loss(out, target, lam).item() == pytest.approx(F.cross_entropy(expected_logits, target).item())
    # a huge lambda is no margin at all: plain softmax on norm * cos
    assert asoftmax_loss(out, target, 1e12).item() == pytest.approx(F.cross_entropy(cos * 3, target).item())


def test_utterance_input_norm_ignores_a_stationary_channel():
    # A fixed filter adds the same log gain to a bin in every frame: the scores must not move.
    torch.manual_seed(0)
    model = build_model(ModelSettings(input_norm="utterance")).eval()
    x = torch.randn(2, 1, 45, 64)
    colour = torch.linspace(-2.0, 1.0, 45)[None, None, :, None]
    torch.testing.assert_close(model(x + colour).cos_theta, model(x).cos_theta, rtol=1e-4, atol=1e-5)
    plain = build_model(ModelSettings()).eval()
    assert not torch.allclose(plain(x + colour).cos_theta, plain(x).cos_theta, atol=1e-3)
