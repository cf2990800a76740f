"""The mini corpus plan: deterministic, speaker-disjoint, unseen attacks in eval."""
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from pipeline.corpus import ATTACKS, final_channel, find_prompts, plan_partition, prompt_seconds, read_prompt
from pipeline.settings import PARTITIONS, CorpusSettings


@pytest.fixture(scope="module")
def prompts():
    return find_prompts(CorpusSettings())


@pytest.fixture(scope="module")
def plans(prompts):
    settings = CorpusSettings()
    return {p: plan_partition(p, prompts, settings) for p in PARTITIONS}


def test_plan_is_deterministic(plans):
    settings = CorpusSettings()
    again = plan_partition("train", find_prompts(settings), settings)
    assert again == plans["train"]


def test_partitions_have_requested_sizes_and_unique_ids(plans):
    settings = CorpusSettings()
    for part, items in plans.items():
        n_attacks = len(settings.attacks[part])
        assert len(items) == settings.bonafide[part] + n_attacks * settings.spoofs_per_attack[part]
        assert sum(i.key == "bonafide" for i in items) == settings.bonafide[part]
        assert len({i.utt_id for i in items}) == len(items)


def test_train_and_eval_speakers_are_disjoint(plans):
    speakers = {p: {i.speaker for i in items} for p, items in plans.items()}
    assert not speakers["train"] & speakers["eval"]
    assert not speakers["train"] & speakers["dev"]


def test_eval_has_attacks_unseen_in_train_and_dev(plans):
    attacks = {p: {i.attack for i in items} - {"-"} for p, items in plans.items()}
    unseen = attacks["eval"] - attacks["train"] - attacks["dev"]
    assert unseen and unseen <= set(ATTACKS)
    assert attacks["eval"] & attacks["train"], "eval should also keep some seen attacks"


def test_bonafide_prompts_are_not_reused_as_vocoder_sources(plans):
    for items in plans.values():
        bona = {i.prompt.path for i in items if i.key == "bonafide"}
        vocoded = {i.prompt.path for i in items if i.key == "spoof" and not i.text}
        assert not bona & vocoded


def test_final_channel_normalises_level_and_keeps_16k():
    rng = np.random.default_rng(0)
    loud = 0.8 * np.sin(2 * np.pi * 200 * np.arange(16000) / 16000) + 0.01 * rng.standard_normal(16000)
    quiet = loud * 0.01
    out_loud, out_quiet = (final_channel(x.astype(np.float32), CorpusSettings()) for x in (loud, quiet))
    rms = [20 * np.log10(np.sqrt(np.mean(y ** 2))) for y in (out_loud, out_quiet)]
    assert abs(rms[0] - rms[1]) < 0.5 and abs(rms[0] + 26) < 1.5


def test_speakers_give_equal_bonafide_shares(plans):
    settings = CorpusSettings()
    shares = Counter(i.speaker for i in plans["train"] if i.key == "bonafide")
    assert set(shares) == set(settings.partition_speakers["train"])
    assert max(shares.values()) - min(shares.values()) <= 1


@pytest.mark.parametrize("spoofs", [150, 300, 500])
def test_every_attack_copies_every_speaker_equally(spoofs, prompts):
    # With spoofs taken from one shared queue, a large attack count used to give a whole attack
    # to the speaker with the most prompts (all A04 copied ALLISON): a speaker cue for the attack.
    settings = CorpusSettings()
    settings = replace(settings, spoofs_per_attack={**settings.spoofs_per_attack, "train": spoofs})
    items = plan_partition("train", prompts, settings)
    for attack in settings.attacks["train"]:
        shares = Counter(i.speaker for i in items if i.attack == attack)
        assert set(shares) == set(settings.partition_speakers["train"]), attack
        assert max(shares.values()) - min(shares.values()) <= 1, (attack, shares)
    # Vocoders copy a speaker's recordings once each before any is copied again.
    bona = {i.prompt.path for i in items if i.key == "bonafide"}
    for speaker in settings.partition_speakers["train"]:
        copied = [i.prompt.path for i in items if i.speaker == speaker and i.key == "spoof" and not i.text]
        available = len([p for p in prompts[speaker] if p.path not in bona])
        assert len(set(copied)) == min(len(copied), available), speaker


def test_8k_wav_and_gsm_prompts_are_read_at_16k(prompts):
    for speaker, suffix in (("MENARDI", ".wav"), ("ESCO", ".gsm"), ("ARMELLE", ".gsm"), ("JUNE", ".g722")):
        path = next(p.path for p in prompts[speaker] if p.path.endswith(suffix))
        x = read_prompt(path)
        assert x.dtype == np.float32 and np.all(np.isfinite(x)) and np.sqrt(np.mean(x ** 2)) > 1e-3
        assert abs(len(x) / 16000 - prompt_seconds(Path(path))) < 0.01


def test_final_channel_band_limits_every_utterance():
    t = np.arange(16000) / 16000
    tones = (0.3 * np.sin(2 * np.pi * 300 * t) + 0.3 * np.sin(2 * np.pi * 6000 * t)).astype(np.float32)

    def level_at(y, hz):
        spectrum = np.abs(np.fft.rfft(y))
        return spectrum[int(hz)]  # 1 Hz bins: the signal is 1 s long

    narrow = final_channel(tones, CorpusSettings())
    wide = final_channel(tones, replace(CorpusSettings(), channel_rate=16000))
    assert len(narrow) == len(wide) == len(tones)
    assert level_at(wide, 6000) > 0.3 * level_at(wide, 300)
    assert level_at(narrow, 6000) < 1e-3 * level_at(narrow, 300)
