"""Every spoof generator of the mini corpus makes real, finite, audible speech, the same on every run."""
import re
from dataclasses import replace

import numpy as np
import pytest

from pipeline.mini import generators
from pipeline.mini.builder import find_prompts, plan_partition, prompt_audio
from pipeline.mini.generators import ATTACKS, GeneratorError, generate, prepare
from pipeline.settings import CorpusSettings

TEXTS = {"en": "Please hold while we transfer your call.", "ja": "新しいメッセージが35件あります。",
         "fr": "Veuillez patienter pendant que nous transférons votre appel."}


@pytest.fixture(scope="module")
def recording():
    """A real bona fide recording (Allison, an Asterisk prompt of the mini corpus) at 16 kHz."""
    prompts = find_prompts(CorpusSettings(speakers={"en_US_f_Allison": "ALLISON"}))["ALLISON"]
    return prompt_audio(prompts[0])


@pytest.mark.slow
@pytest.mark.parametrize("attack_id", sorted(ATTACKS))
def test_generator_makes_finite_audible_speech_deterministically(attack_id, recording, tmp_path):
    attack = ATTACKS[attack_id]
    language = attack.language or "fr"
    source = None if attack.tts else recording

    def make():
        return generate(attack, source, TEXTS[language] if attack.tts else "", language,
                        np.random.default_rng(7), tmp_path)

    y = make()
    assert y.dtype == np.float32 and np.all(np.isfinite(y))
    seconds = len(y) / generators.SAMPLE_RATE
    if attack.tts:
        assert 1.0 < seconds < 10.0, seconds
    else:  # a vocoder keeps the recording's timing
        assert abs(seconds - len(recording) / generators.SAMPLE_RATE) < 0.05, seconds
    # speech, not silence or a click: audible over most of the length, not clipped flat
    frames = y[: len(y) // 400 * 400].reshape(-1, 400)
    loud = np.sqrt(np.mean(frames ** 2, axis=1)) > 0.01 * np.max(np.abs(y))
    assert loud.mean() > 0.3 and np.max(np.abs(y)) < 10.0
    # the corpus is rebuilt identically: same item seed, same audio
    assert np.array_equal(make(), y)


def test_vocoders_change_the_recording(recording, tmp_path):
    for attack in ATTACKS.values():
        if not attack.tts:
            y = generate(attack, recording, "", "en", np.random.default_rng(1), tmp_path)
            n = min(len(y), len(recording))
            assert not np.allclose(y[:n], recording[:n], atol=1e-3), attack.generator


def test_silent_output_is_refused(monkeypatch, tmp_path):
    monkeypatch.setattr(generators, "vocode", lambda generator, x, rng, tmp: np.zeros_like(x))
    with pytest.raises(GeneratorError, match="lpc made silent"):
        generate(ATTACKS["A11"], np.ones(16000, np.float32), "", "en", np.random.default_rng(0), tmp_path)


def test_missing_engine_is_named_before_any_work(monkeypatch):
    monkeypatch.setattr("shutil.which", lambda tool: None)
    with pytest.raises(GeneratorError, match="espeak-ng is not installed"):
        prepare({"espeak", "world"})


def test_japanese_engines_get_japanese_text_and_piper_english():
    settings = replace(CorpusSettings(), attacks={"train": ["A01", "A08", "A09", "A10"], "dev": ["A01"],
                                                  "eval": ["A01"]},
                       spoofs_per_attack={"train": 20, "dev": 5, "eval": 5})
    items = plan_partition("train", find_prompts(settings), settings)
    kana = re.compile(r"[\u3040-\u30ff]")
    for item in items:
        if item.attack in ("A09", "A10"):
            assert kana.search(item.text), item.text
        elif item.attack == "A08":
            assert item.text.isascii(), item.text
