"""The mini corpus plan: deterministic, speaker-disjoint, unseen attacks in eval."""
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from pipeline.mini.builder import (ATTACKS, final_channel, find_prompts, plan_partition, prompt_audio, prompt_seconds,
                                   read_prompt)
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


def word_voice(folder: Path, words: int, f0: float) -> Path:
    """A voice folder of short word recordings (44.1 kHz, with silence around each word)."""
    import soundfile as sf
    folder.mkdir(parents=True)
    t = np.arange(int(0.4 * 44100)) / 44100
    for i in range(words):
        word = 0.3 * np.sin(2 * np.pi * f0 * (1 + 0.02 * i) * t)
        sf.write(folder / f"w{i:02d}.ogg", np.concatenate([np.zeros(22050), word, np.zeros(22050)]), 44100)
    return folder


@pytest.fixture(scope="module")
def word_settings(tmp_path_factory):
    root = tmp_path_factory.mktemp("words")
    voices = {str(word_voice(root / "de", 40, 120)): "W_DE", str(word_voice(root / "sv", 9, 180)): "W_SV",
              str(word_voice(root / "ca", 12, 150)): "W_CA", str(word_voice(root / "uk", 12, 210)): "W_UK"}
    return CorpusSettings(speakers={}, word_voices=voices, words_per_utterance=3,
                          partition_speakers={"train": ["W_DE", "W_SV"], "dev": ["W_CA"], "eval": ["W_UK"]},
                          bonafide={"train": 10, "dev": 3, "eval": 3},
                          spoofs_per_attack={"train": 20, "dev": 3, "eval": 3})


def test_word_voices_are_joined_into_utterances_of_their_language(word_settings):
    prompts = find_prompts(word_settings)
    assert [len(prompts[s]) for s in ("W_DE", "W_SV", "W_CA")] == [13, 3, 4]  # 40 // 3, 9 // 3, 12 // 3
    first = prompts["W_SV"][0]
    assert first.language == "sv" and [Path(p).name for p in first.paths] == ["w00.ogg", "w01.ogg", "w02.ogg"]
    x = prompt_audio(first)
    # three 0.4 s words, each trimmed of its 0.5 s silences (to within a few 8 ms frames), two
    # 0.2 s gaps: 1.6 s, where the files last 4.2 s
    assert x.dtype == np.float32 and 1.6 <= len(x) / 16000 < 1.8


def test_every_speaker_has_the_same_bonafide_to_spoof_ratio(word_settings):
    items = plan_partition("train", find_prompts(word_settings), word_settings)
    bona = Counter(i.speaker for i in items if i.key == "bonafide")
    assert bona == {"W_DE": 7, "W_SV": 3}  # turns while W_SV's three utterances last
    for attack in word_settings.attacks["train"]:
        spoofs = Counter(i.speaker for i in items if i.attack == attack)
        assert spoofs == {"W_DE": 14, "W_SV": 6}, attack  # 20 split 7 : 3


def test_a_speaker_in_two_partitions_is_refused(word_settings):
    from pipeline.settings import SettingsError
    bad = replace(word_settings, partition_speakers={"train": ["W_DE", "W_SV"], "dev": ["W_CA", "W_SV"],
                                                     "eval": ["W_UK"]})
    with pytest.raises(SettingsError, match="W_SV is in both train and dev"):
        bad.validate("corpus")


def test_asterisk_silence_files_are_not_used_as_speech(prompts, tmp_path):
    # Asterisk's silence/N files hold N seconds of near digital silence; levelled like speech they
    # became loud coding noise labelled bona fide.
    assert not any("/silence/" in p.path for voice in prompts.values() for p in voice)
    import soundfile as sf
    voice = tmp_path / "xx_XX_f_Test"
    (voice / "digits").mkdir(parents=True)
    (voice / "silence").mkdir()
    t = np.arange(24000) / 16000
    sf.write(voice / "digits" / "1.wav", 0.3 * np.sin(2 * np.pi * 150 * t), 16000)
    sf.write(voice / "silence" / "2.wav", np.zeros(32000), 16000)
    found = find_prompts(CorpusSettings(sources=str(tmp_path), speakers={"xx_XX_f_Test": "TEST"}))
    assert [Path(p.path).relative_to(voice).as_posix() for p in found["TEST"]] == ["digits/1.wav"]


def test_a_recording_without_speech_is_refused_by_name(tmp_path):
    import soundfile as sf

    from pipeline.mini.builder import CorpusError, Prompt
    speech, quiet = tmp_path / "speech.wav", tmp_path / "quiet.wav"
    t = np.arange(24000) / 16000
    sf.write(speech, 0.3 * np.sin(2 * np.pi * 150 * t), 16000)
    sf.write(quiet, 1e-4 * np.sin(2 * np.pi * 150 * t), 16000)  # -80 dBFS (-78 once 16-bit)
    assert len(prompt_audio(Prompt((str(speech),), "S", "en"))) == 24000
    for paths in ((str(quiet),), (str(speech), str(quiet))):
        with pytest.raises(CorpusError, match=r"quiet\.wav: no speech in this recording \(peak -7\d dBFS\)"):
            prompt_audio(Prompt(paths, "S", "en"))


def test_a_generator_failure_names_the_utterance_and_its_source(tmp_path, monkeypatch):
    import soundfile as sf

    import pipeline.mini.builder as corpus
    from pipeline.mini.builder import GeneratorError, Item, Prompt, render
    source = tmp_path / "word.wav"
    sf.write(source, 0.3 * np.sin(2 * np.pi * 150 * np.arange(24000) / 16000), 16000)

    def fails(*args, **kwargs):
        raise GeneratorError("psola made silent or non-finite audio from its source recording")
    monkeypatch.setattr(corpus, "generate", fails)
    item = Item("MINI_T_0000007", "S", "A13", Prompt((str(source),), "S", "en"), "", 1)
    with pytest.raises(GeneratorError, match=rf"MINI_T_0000007 \(A13, from psola:{source}\): psola made silent"):
        render(item, tmp_path, CorpusSettings())
    assert not list(tmp_path.glob("*.flac"))


def test_render_chunks_keep_one_generator_each_and_the_costliest_go_first(prompts):
    from pipeline.mini.builder import KOKORO_CHUNK, RENDER_CHUNK, chunk_seconds, generator_of, render_chunks
    settings = replace(CorpusSettings(), attacks={"train": ["A01", "A04", "A09", "A11"], "dev": ["A01"], "eval": ["A01"]})
    plan = plan_partition("train", prompts, settings)
    chunks = render_chunks(plan)
    assert sorted(i.utt_id for c in chunks for i in c) == sorted(i.utt_id for i in plan)
    for chunk in chunks:
        assert len({generator_of(i) for i in chunk}) == 1
        assert len(chunk) <= (KOKORO_CHUNK if generator_of(chunk[0]) == "kokoro" else RENDER_CHUNK)
    first = max(chunks, key=chunk_seconds)
    assert generator_of(first[0]) == "kokoro"  # the neural TTS: handed out before the cheap ones
