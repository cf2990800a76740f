import math

import pytest
import torch
import torch.nn.functional as F

from model import (asoftmax_loss, bonafide_score, build_model, count_parameters, floor_gamma, head_loss, margin_lambda,
                   psi)
from model.asoftmax import AngleLinear, AngularOutput, SoftmaxHead, cos_m_theta
from model.one_class import OneClassHead, one_class_loss
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


@pytest.mark.parametrize("head", ["asoftmax", "softmax", "ocsoftmax"])
def test_the_score_orders_utterances_as_the_heads_own_decision(head):
    torch.manual_seed(0)
    model = build_model(ModelSettings(head=head))
    with torch.no_grad():  # embeddings of every direction and size, as a trained backbone gives
        out = model.head(torch.randn(256, model.backbone.embedding_dim) * torch.linspace(0.1, 5, 256)[:, None])
    score = bonafide_score(out)
    decision = out.cos_theta.argmax(dim=1) == 1  # the class the head picks (no margin at test time)
    assert decision.any() and not decision.all()
    # every utterance the head calls bona fide scores above every one it calls spoof: score > 0
    assert torch.equal(score > 0, decision)
    assert score[decision].min() > score[~decision].max()
    if head == "softmax":  # the log-odds of bona fide
        logp = torch.log_softmax(out.cos_theta, dim=1)
        assert torch.allclose(score, logp[:, 1] - logp[:, 0], atol=1e-5)


@pytest.mark.parametrize("head", [AngleLinear(256, 2, 4), SoftmaxHead(256, 2), OneClassHead(256)])
def test_the_head_runs_in_fp32_under_bf16_autocast(head):
    torch.manual_seed(0)
    x = torch.randn(16, 256)
    reference = head(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = head(x.bfloat16())
    for a, b in zip(reference, mixed):
        assert b.dtype == torch.float32
    # only the bf16 rounding of the input remains (a bf16 matmul was off by up to 2e-3 in cos)
    assert torch.allclose(mixed.cos_theta, head(x.bfloat16().float()).cos_theta, atol=1e-6)
    assert torch.allclose(mixed.psi_theta, head(x.bfloat16().float()).psi_theta, atol=1e-5)


def test_margin_reaches_its_floor_at_the_chosen_fraction_of_the_run():
    for total, fraction in ((424, 1.0), (424, 0.5), (32000, 0.25)):
        gamma = floor_gamma(5.0, 1500.0, fraction, total)
        at = round(fraction * total)
        assert margin_lambda(at, 5.0, 1500.0, gamma) == pytest.approx(5.0)
        assert margin_lambda(at // 2, 5.0, 1500.0, gamma) > 5.0
    # the paper's gamma 0.1 leaves lambda at 34.6 after 424 steps: margin weight 1/(1+lambda) < 0.03
    assert margin_lambda(424) == pytest.approx(1500 / 43.4)


@pytest.mark.parametrize("placement, gates", [("split_input", 4), ("split_output", 56)])
def test_both_sr_placements_build_with_their_gate_counts(placement, gates):
    settings = ModelSettings(sr_placement=placement)
    model = build_model(settings)
    found = [m for m in model.modules() if type(m).__name__ == "SpatialReconstruction"]
    # split_input: one per block outside a stage's first block (4 of 8); split_output: one per
    # split (7) in all 8 blocks
    assert len(found) == gates
    assert all(m.dropout.p == settings.sr_dropout for m in found)
    per_gate, local_attention = 7 * 7 + 1, 3  # conv + bias; a 3-tap conv in each of the 8 blocks
    plain = count_parameters(build_model(ModelSettings(arch="res2net")))
    assert count_parameters(model) == plain + gates * per_gate + 8 * local_attention
    out = model(torch.randn(2, 1, 45, 64))
    assert out.cos_theta.shape == (2, 2)


def test_split_input_gates_the_incoming_split_and_split_output_the_conv_output():
    torch.manual_seed(0)
    x = torch.randn(2, 1, 45, 40)
    outputs = {}
    for placement in ("split_input", "split_output"):
        torch.manual_seed(1)
        model = build_model(ModelSettings(sr_placement=placement, layers=[2, 2], planes=[16, 32])).eval()
        calls = []
        for m in model.modules():
            if type(m).__name__ == "SpatialReconstruction":
                m.register_forward_hook(lambda mod, inp, out: calls.append(inp[0].shape[1]))
        with torch.no_grad():
            outputs[placement] = model(x).cos_theta
        width = int(16 * 26 / 64)
        # split_input: 6 calls (splits 2..7) in each of the 2 non-first blocks; split_output: 7 per block
        assert calls.count(width) + calls.count(int(32 * 26 / 64)) == (12 if placement == "split_input" else 28)
    assert not torch.allclose(outputs["split_input"], outputs["split_output"])


def test_one_class_loss_penalises_bona_fide_outside_and_spoofs_inside_their_bounds():
    def loss(c, label):
        out = AngularOutput(torch.tensor([[-c, c]]), torch.tensor([[-c, c]]), torch.tensor([10.0]))
        return one_class_loss(out, torch.tensor([label]), 0.9, 0.2, 20.0).item()
    # bona fide: softplus(20 (0.9 - c)); spoof: softplus(20 (c - 0.2))
    assert loss(0.9, 1) == pytest.approx(math.log(2.0))
    assert loss(1.0, 1) == pytest.approx(math.log1p(math.exp(-2.0)))
    assert loss(0.5, 1) > 7.9  # bona fide well outside its cone
    assert loss(0.5, 0) == pytest.approx(math.log1p(math.exp(6.0)))  # a spoof inside the spoof bound
    assert loss(-0.8, 0) < 1e-8  # a spoof anywhere far enough costs nothing: no spoof centre
    assert loss(0.5, 1) > loss(0.5, 0)  # the bona fide bound is the tighter one


def test_one_class_training_makes_bona_fide_compact_and_separates_an_unseen_spoof_cluster():
    """The behaviour the head is chosen for: trained on bona fide and two spoof clusters, a third
    spoof cluster in a direction never seen still scores below all bona fide."""
    torch.manual_seed(0)
    dim = 16
    directions = torch.linalg.qr(torch.randn(dim, dim))[0]
    def cluster(k, n):
        return directions[k] * 3.0 + 0.4 * torch.randn(n, dim)
    bona, spoof_a, spoof_b, unseen = cluster(0, 200), cluster(1, 100), cluster(2, 100), cluster(3, 100)
    x = torch.cat([bona, spoof_a, spoof_b])
    y = torch.cat([torch.ones(200, dtype=torch.long), torch.zeros(200, dtype=torch.long)])
    settings = ModelSettings(head="ocsoftmax")
    head, loss_fn = OneClassHead(dim, settings.oc_alpha), head_loss(settings)
    optimizer = torch.optim.Adam(head.parameters(), lr=0.05)
    for _ in range(200):
        optimizer.zero_grad()
        loss_fn(head(x), y, 0.0).backward()
        optimizer.step()
    with torch.no_grad():
        bona_scores, unseen_scores = bonafide_score(head(bona)), bonafide_score(head(unseen))
    assert bona_scores.min() > unseen_scores.max()
    assert (bona_scores / 2).mean() > 0.8  # bona fide pulled towards its cone (bound: cos 0.9)


def test_the_network_reads_its_own_streams_only_and_refuses_a_fusion_only_one():
    from features.streams import network_streams
    from model import Detector
    from pipeline.settings import FeatureSettings
    features = FeatureSettings(view2_bands=8, excitation=True, harmonicity=True, harmonic_phase=True)
    settings = ModelSettings(layers=[1, 1], planes=[16, 32], scale=4, stem_channels=8, view2_dim=16)
    network = build_model(settings, features).eval()
    assert network.streams == network_streams(features) == {"subband": 45, "view2": 8, "excitation": 4}
    assert set(build_model(settings).streams) == {"subband"}  # without feature settings: the subband alone
    with torch.no_grad():  # its input: the rows of those streams, nothing else
        assert network(torch.randn(2, 1, 45 + 8 + 4, 40)).cos_theta.shape == (2, 2)
    with pytest.raises(ValueError, match="harmonicity"):
        Detector(settings, {"subband": 45, "harmonicity": 1})


@pytest.mark.parametrize("placement", ["split_output", "split_input"])
def test_folding_the_batchnorms_keeps_the_scores_and_leaves_no_norm(placement):
    from features.streams import network_streams
    from model import fold_batchnorm
    from pipeline.settings import FeatureSettings
    features = FeatureSettings(view2_bands=8, excitation=True)
    settings = ModelSettings(layers=[1, 2], planes=[16, 32], scale=4, stem_channels=8, view2_dim=16,
                             sr_placement=placement)
    torch.manual_seed(0)
    network = build_model(settings, features)
    network.train()
    with torch.no_grad():  # running statistics far from 0 / 1, as after training
        for _ in range(3):
            network(torch.randn(4, 1, sum(network_streams(features).values()), 48) * 3 + 1)
    network.eval()
    x = torch.randn(3, 1, 45 + 8 + 4, 40)
    with torch.no_grad():
        before = bonafide_score(network(x))
        folded = fold_batchnorm(network)
        after = bonafide_score(folded(x))
    assert not any(isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)) for m in folded.modules())
    assert torch.allclose(before, after, atol=1e-5), (before, after)


@pytest.mark.parametrize("precision, folded", [("fp32", True), ("bf16", False)])
def test_a_model_files_scorer_folds_its_own_copy_in_fp32_and_keeps_the_norms_in_bf16(precision, folded, monkeypatch):
    from pipeline.scoring import scorer as scoring
    from pipeline.scoring.modelfile import ModelFile
    from pipeline.settings import FeatureSettings
    monkeypatch.setattr(scoring, "native_bf16", lambda device: (True, "as if this CPU had AMX"))
    settings = ModelSettings(layers=[1, 1], planes=[16, 32], scale=4, stem_channels=8)
    weights = build_model(settings).state_dict()
    saved = {key: value.clone() for key, value in weights.items()}
    model_file = ModelFile(settings, FeatureSettings(), 100, "whole", precision, 0.0, None, None, 0.1, 1, 1, weights)
    scorer = scoring.Scorer.of(model_file)
    norms = [m for m in scorer.network.modules() if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d))]
    assert scorer.precision == precision and (not norms) == folded
    assert all(torch.equal(saved[k], v) for k, v in model_file.weights.items())  # the file's weights untouched
