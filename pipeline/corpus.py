"""Stage `corpus`: build the mini corpus in the ASVspoof 2019 LA layout from installable material.

Bona fide speech is the Asterisk voice prompts shipped by Debian (real human recordings:
16 kHz G.722, 8 kHz WAV or 8 kHz GSM). Spoofs are made here, one attack id per generator (see
ATTACKS). Every utterance, bona fide or spoof, leaves through the same channel (silence trim,
telephone band limit, level normalisation, a G.722 round trip, 16-bit FLAC), so the channel
cannot tell the classes apart.

    python -m pipeline.corpus [--params params.yaml] [--out data/mini_corpus]
"""
from __future__ import annotations

import argparse
import random
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from joblib import Parallel, delayed
from tqdm import tqdm

from features import resample
from features.audio import AudioError, load_audio
from features.f0 import pyworld
from pipeline.protocol import audio_dir, protocol_path
from pipeline.settings import PARTITIONS, CorpusSettings, load_settings

SAMPLE_RATE = 16000
G722_BYTES_PER_SECOND = 8000  # 64 kbit/s
# Prompt files read: G.722 (asterisk-core-sounds-*-g722); WAV and headerless GSM 6.10, both
# 8 kHz (asterisk-prompt-*), which soundfile reads.
PROMPT_SUFFIXES = (".g722", ".wav", ".gsm")
# Word voices (KDE's ktuberling and klettres): single words, letters and syllables recorded by
# volunteers, as Ogg Vorbis, Opus or WAV at 44.1 kHz.
WORD_SUFFIXES = (".ogg", ".opus", ".wav")
# Silence put between joined words (seconds), after each word's own silence is trimmed.
WORD_GAP_SECONDS = 0.2

# Attack id -> (generator, description). Train/dev use A01-A04; eval adds unseen A05-A07.
ATTACKS = {
    "A01": ("espeak", "TTS: espeak-ng formant synthesis, in the target speaker's language"),
    "A02": ("flite", "TTS: flite (CMU) voices, English"),
    "A03": ("world", "vocoder: WORLD analysis/resynthesis (dio + CheapTrick + D4C)"),
    "A04": ("griffinlim", "vocoder: Griffin-Lim phase reconstruction from the magnitude STFT"),
    "A05": ("festival", "TTS: festival diphone synthesis, English"),
    "A06": ("world_vc", "VC-like: WORLD with pitch shift and spectral-envelope frequency warping"),
    "A07": ("world_spss", "SPSS-like: WORLD with harvest F0, smoothed F0 and low-order coded envelope"),
}

TTS_GENERATORS = ("espeak", "flite", "festival")  # the rest vocode a bona fide prompt
# espeak-ng voice per bona fide language; a language espeak lacks gets its nearest neighbour
# (Galician: Portuguese; Low German: German; Walloon: French; Nynorsk: Bokmål).
ESPEAK_VOICES = {"en": "en-us", "es": "es-419", "fr": "fr-fr", "it": "it", "ru": "ru", "ar": "ar", "ca": "ca",
                 "cs": "cs", "da": "da", "de": "de", "el": "el", "fi": "fi", "ga": "ga", "gl": "pt", "he": "he",
                 "hu": "hu", "lt": "lt", "ml": "ml", "nb": "nb", "nds": "de", "nl": "nl", "nn": "nb", "pt": "pt",
                 "ro": "ro", "sl": "sl", "sr": "sr", "sv": "sv", "tn": "tn", "uk": "uk", "wa": "fr-fr"}
FLITE_VOICES = ("kal16", "awb", "rms", "slt")

# IVR-style prompts, written for this project in the languages of the bona fide speakers, so
# TTS spoofs say the same kind of thing as the bona fide prompts. {n} a number, {d} a digit.
PROMPT_TEMPLATES = {
    "en": [
        "Please enter your account number followed by the pound key.",
        "You have {n} new messages.", "Your call is number {n} in the queue.",
        "The number you have dialed is not in service.",
        "Please hold while we transfer your call.", "Press {d} to return to the main menu.",
        "Your conference room number is {n}.", "The estimated wait time is {d} minutes.",
        "Sorry, that extension is not available.", "Please record your message after the tone.",
        "Your balance is {n} dollars.", "To speak with an operator, press zero.",
    ],
    "es": [
        "Por favor, introduzca su número de cuenta seguido de la tecla numeral.",
        "Tiene {n} mensajes nuevos.", "Su llamada es la número {n} en la cola.",
        "El número que usted marcó no está en servicio.",
        "Por favor espere mientras transferimos su llamada.",
        "Oprima {d} para volver al menú principal.",
        "El número de su sala de conferencia es {n}.",
        "El tiempo de espera estimado es de {d} minutos.",
        "Lo siento, esa extensión no está disponible.",
        "Por favor, grabe su mensaje después del tono.",
    ],
    "fr": [
        "Veuillez entrer votre numéro de compte suivi de la touche dièse.",
        "Vous avez {n} nouveaux messages.", "Votre appel est le numéro {n} dans la file d'attente.",
        "Le numéro que vous avez composé n'est pas en service.",
        "Veuillez patienter pendant que nous transférons votre appel.",
        "Appuyez sur {d} pour revenir au menu principal.",
        "Le numéro de votre salle de conférence est {n}.",
        "Le temps d'attente estimé est de {d} minutes.",
        "Désolé, ce poste n'est pas disponible.",
        "Veuillez enregistrer votre message après le signal sonore.",
    ],
    "it": [
        "Inserisca il suo numero di conto seguito dal tasto cancelletto.",
        "Ha {n} nuovi messaggi.", "La sua chiamata è la numero {n} in coda.",
        "Il numero selezionato non è attivo.", "Attenda mentre trasferiamo la sua chiamata.",
        "Prema {d} per tornare al menu principale.", "Il numero della sua sala conferenze è {n}.",
        "Il tempo di attesa stimato è di {d} minuti.",
        "Spiacenti, questo interno non è disponibile.",
        "Registri il suo messaggio dopo il segnale acustico.",
    ],
    "ru": [
        "Пожалуйста, введите номер счёта и нажмите решётку.", "У вас {n} новых сообщений.",
        "Ваш звонок {n} в очереди.", "Набранный вами номер не обслуживается.",
        "Пожалуйста, подождите, мы переводим ваш звонок.",
        "Нажмите {d}, чтобы вернуться в главное меню.", "Номер вашей конференц-комнаты {n}.",
        "Примерное время ожидания {d} минут.", "Извините, этот внутренний номер недоступен.",
        "Пожалуйста, запишите сообщение после сигнала.",
    ],
}


class CorpusError(RuntimeError):
    pass


@dataclass(frozen=True)
class Prompt:
    """One recording (an Asterisk prompt), or a few short ones joined into one utterance (words
    or letters of the KDE voices)."""
    paths: tuple[str, ...]
    speaker: str
    language: str

    @property
    def path(self) -> str:
        """The prompt's name: its file, or its files joined by '+'."""
        return "+".join(self.paths)


@dataclass(frozen=True)
class Item:
    """One utterance to render: bona fide (a prompt) or a spoof (an attack + prompt or text)."""
    utt_id: str
    speaker: str
    attack: str            # "-" for bona fide
    prompt: Prompt         # bona fide source, vocoder input, or TTS target speaker/language
    text: str
    seed: int

    @property
    def key(self) -> str:
        return "bonafide" if self.attack == "-" else "spoof"


# ---------------------------------------------------------------- planning (no audio work)

def prompt_seconds(path: Path) -> float:
    if path.suffix == ".g722":
        return path.stat().st_size / G722_BYTES_PER_SECOND
    return sf.info(str(path)).duration


def language_of(folder: str) -> str:
    """`en_US_f_Allison` -> en, `pt_BR` -> pt, `sr@latin` -> sr."""
    return re.split(r"[_@]", Path(folder).name)[0]


def find_prompts(settings: CorpusSettings) -> dict[str, list[Prompt]]:
    """Prompts per speaker, sorted, within the duration limits: each Asterisk recording, and the
    short recordings of each word voice joined in groups of words_per_utterance (in file-name
    order, so the same words go together on every machine)."""
    by_speaker: dict[str, list[Prompt]] = {}
    for folder, speaker in sorted(settings.speakers.items()):
        voice_dir = Path(settings.sources) / folder
        if not voice_dir.is_dir():
            raise CorpusError(f"{voice_dir}: voice folder missing; install the Asterisk prompts "
                              f"(make system-deps) or fix corpus.sources / corpus.speakers")
        for path in sorted(p for p in voice_dir.rglob("*") if p.suffix in PROMPT_SUFFIXES):
            if settings.min_seconds <= prompt_seconds(path) <= settings.max_seconds:
                by_speaker.setdefault(speaker, []).append(Prompt((str(path),), speaker, language_of(folder)))
    for folder, speaker in sorted(settings.word_voices.items()):
        voice_dir = Path(folder)
        if not voice_dir.is_dir():
            raise CorpusError(f"{voice_dir}: word voice folder missing; install ktuberling-data and "
                              f"klettres-data (make system-deps) or fix corpus.word_voices")
        words = sorted(p for p in voice_dir.rglob("*") if p.suffix in WORD_SUFFIXES)
        n = settings.words_per_utterance
        # Word files carry their own silence (most last about 2 s), trimmed when joined: the
        # group's files must be long enough together, and the joined utterance is cut to
        # max_seconds by the channel like any other.
        for group in (words[i:i + n] for i in range(0, len(words) - n + 1, n)):
            if sum(prompt_seconds(p) for p in group) >= settings.min_seconds:
                by_speaker.setdefault(speaker, []).append(
                    Prompt(tuple(map(str, group)), speaker, language_of(folder)))
    return by_speaker


def make_text(language: str, rng: random.Random) -> str:
    templates = PROMPT_TEMPLATES.get(language, PROMPT_TEMPLATES["en"])
    count = rng.choice((1, 1, 2))
    parts = [rng.choice(templates).format(n=rng.randint(2, 9999), d=rng.randint(1, 9)) for _ in range(count)]
    return " ".join(parts)


def proportional_quotas(total: int, shares: list[int]) -> list[int]:
    """total split in proportion to shares, in whole numbers (largest remainder, ties to the first)."""
    if sum(shares) == 0:
        shares = [1] * len(shares)
    exact = [total * s / sum(shares) for s in shares]
    quotas = [int(e) for e in exact]
    by_remainder = sorted(range(len(shares)), key=lambda i: (-(exact[i] - quotas[i]), i))
    for i in by_remainder[:total - sum(quotas)]:
        quotas[i] += 1
    return quotas


def plan_partition(partition: str, prompts: dict[str, list[Prompt]], settings: CorpusSettings) -> list[Item]:
    """Decide every utterance of a partition; deterministic for the corpus seed."""
    rng = random.Random(f"{settings.seed}-{partition}")
    # Speakers take turns for the bona fide utterances, so each gives the same share while its
    # prompts last. Every attack then takes from each speaker in proportion to that speaker's
    # bona fide share, also by turns: every speaker has the same bona fide : spoof ratio in every
    # attack, so neither the class nor the attack can be told by whose voice it is.
    per_speaker = [list(prompts.get(spk, [])) for spk in settings.partition_speakers[partition]]
    per_speaker = [speaker_prompts for speaker_prompts in per_speaker if speaker_prompts]
    if not per_speaker:
        raise CorpusError(f"partition {partition}: no prompts for speakers "
                          f"{settings.partition_speakers[partition]}")
    for speaker_prompts in per_speaker:
        rng.shuffle(speaker_prompts)
    pool = [speaker_prompts[i] for i in range(max(map(len, per_speaker)))
            for speaker_prompts in per_speaker if i < len(speaker_prompts)]
    n_bona = settings.bonafide[partition]
    if n_bona > len(pool):
        raise CorpusError(f"partition {partition}: corpus.bonafide.{partition}={n_bona} but only "
                          f"{len(pool)} prompts of its speakers are usable")
    bonafide = pool[:n_bona]
    specs = [("-", p, "") for p in bonafide]
    # Vocoded spoofs copy each speaker's prompts that are not bona fide in this corpus; a speaker
    # whose prompts all went to bona fide lends those again. One cursor per speaker runs across
    # the vocoder attacks, so they copy different recordings while there are enough. TTS spoofs
    # take only the language (and the speaker label) from a prompt, on a cursor of their own.
    used = {p.path for p in bonafide}
    sources = [[p for p in speaker_prompts if p.path not in used] or speaker_prompts
               for speaker_prompts in per_speaker]
    cursors = {"vocoder": [0] * len(sources), "tts": [0] * len(sources)}
    shares = [sum(p.speaker == speaker_prompts[0].speaker for p in bonafide) for speaker_prompts in per_speaker]
    quotas = proportional_quotas(settings.spoofs_per_attack[partition], shares)
    turn = 0
    for attack in settings.attacks[partition]:
        if attack not in ATTACKS:
            raise CorpusError(f"corpus.attacks.{partition}: unknown attack {attack}; known: {sorted(ATTACKS)}")
        generator = ATTACKS[attack][0]
        is_tts = generator in TTS_GENERATORS
        cursor = cursors["tts" if is_tts else "vocoder"]
        left = list(quotas)
        for _ in range(settings.spoofs_per_attack[partition]):
            while left[turn % len(sources)] == 0:
                turn += 1
            speaker = turn % len(sources)
            left[speaker] -= 1
            turn += 1
            prompt = sources[speaker][cursor[speaker] % len(sources[speaker])]
            cursor[speaker] += 1
            text = ""
            if is_tts:
                language = prompt.language if generator == "espeak" else "en"
                text = make_text(language, rng)
            specs.append((attack, prompt, text))
    rng.shuffle(specs)
    letter = partition[0].upper()
    return [Item(f"MINI_{letter}_{i + 1:07d}", prompt.speaker, attack, prompt, text, rng.getrandbits(32))
            for i, (attack, prompt, text) in enumerate(specs)]


# ---------------------------------------------------------------- audio generators

def read_prompt(path: str) -> np.ndarray:
    """A prompt file as float32 mono at 16 kHz (G.722 decoded here; WAV/GSM as any audio file)."""
    if path.endswith(".g722"):
        import G722
        pcm = G722.G722(SAMPLE_RATE, 64000).decode(Path(path).read_bytes())
        return np.array(pcm, dtype=np.float32) / 32768.0
    return load_audio(path, SAMPLE_RATE)


def prompt_audio(prompt: Prompt) -> np.ndarray:
    """A prompt's audio: its one recording, or its words, each trimmed of its own silence, joined
    by WORD_GAP_SECONDS of silence."""
    if len(prompt.paths) == 1:
        return read_prompt(prompt.paths[0])
    import librosa
    gap = np.zeros(int(WORD_GAP_SECONDS * SAMPLE_RATE), np.float32)
    pieces = []
    for path in prompt.paths:
        word, _ = librosa.effects.trim(read_prompt(path), top_db=40, frame_length=512, hop_length=128)
        pieces += [word, gap]
    return np.concatenate(pieces[:-1])


def g722_round_trip(x: np.ndarray) -> np.ndarray:
    import G722
    pcm = np.clip(np.round(x * 32767.0), -32768, 32767).astype(np.int16)
    coded = G722.G722(SAMPLE_RATE, 64000).encode(pcm)
    return np.array(G722.G722(SAMPLE_RATE, 64000).decode(coded), dtype=np.float32) / 32768.0


def run_tool(cmd: list[str], out_wav: Path) -> np.ndarray:
    try:
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    except FileNotFoundError:
        raise CorpusError(f"{cmd[0]} is not installed (make system-deps installs it)") from None
    except subprocess.CalledProcessError as err:
        raise CorpusError(f"{' '.join(cmd[:3])}... failed: {err.stderr.decode(errors='replace')[-300:]}") from None
    return load_audio(out_wav, SAMPLE_RATE)


def tts(generator: str, text: str, language: str, rng: np.random.Generator, tmp: Path) -> np.ndarray:
    out = tmp / "tts.wav"
    if generator == "espeak":
        variant = rng.choice(["m1", "m2", "m3", "m4", "f1", "f2", "f3", "f4"])
        cmd = ["espeak-ng", "-v", f"{ESPEAK_VOICES.get(language, 'en-us')}+{variant}",
               "-s", str(int(rng.integers(140, 190))), "-p", str(int(rng.integers(30, 70))),
               "-w", str(out), text]
    elif generator == "flite":
        cmd = ["flite", "-voice", str(rng.choice(FLITE_VOICES)),
               "--setf", f"duration_stretch={rng.uniform(0.9, 1.15):.3f}",
               "--setf", f"int_f0_target_mean={rng.uniform(90, 190):.1f}", "-t", text, "-o", str(out)]
    else:  # festival
        (tmp / "text.txt").write_text(text)
        cmd = ["text2wave", "-eval", "(voice_kal_diphone)", "-eval",
               f"(Parameter.set 'Duration_Stretch {rng.uniform(0.9, 1.15):.3f})",
               str(tmp / "text.txt"), "-o", str(out)]
    return run_tool(cmd, out)


def world_analyse(x: np.ndarray, f0_method: str = "dio"):
    x = x.astype(np.float64)
    if f0_method == "harvest":
        f0, t = pyworld.harvest(x, SAMPLE_RATE, frame_period=5.0)
    else:
        f0, t = pyworld.dio(x, SAMPLE_RATE, frame_period=5.0)
        f0 = pyworld.stonemask(x, f0, t, SAMPLE_RATE)
    sp = pyworld.cheaptrick(x, f0, t, SAMPLE_RATE)
    ap = pyworld.d4c(x, f0, t, SAMPLE_RATE)
    return f0, sp, ap


def warp_envelope(sp: np.ndarray, alpha: float) -> np.ndarray:
    """Stretch the spectral envelope along frequency (alpha > 1 moves formants up)."""
    bins = np.arange(sp.shape[1])
    source = np.clip(bins / alpha, 0, sp.shape[1] - 1)
    return np.stack([np.interp(source, bins, frame) for frame in sp])


def vocode(generator: str, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if generator == "griffinlim":
        import librosa
        magnitude = np.abs(librosa.stft(x, n_fft=512, hop_length=128))
        return librosa.griffinlim(magnitude, n_iter=32, hop_length=128, n_fft=512,
                                  random_state=int(rng.integers(2**31)), length=len(x))
    if generator == "world":
        f0, sp, ap = world_analyse(x)
    elif generator == "world_vc":
        f0, sp, ap = world_analyse(x)
        shift = rng.choice([-1, 1]) * rng.uniform(0.12, 0.25)
        f0 = f0 * np.exp(shift)
        sp = warp_envelope(sp, float(np.exp(shift / 2)))
    else:  # world_spss: oversmoothed parameters, like a statistical parametric synthesiser
        import scipy.signal
        f0, sp, ap = world_analyse(x, "harvest")
        voiced = f0 > 0
        f0[voiced] = scipy.signal.medfilt(f0, 9)[voiced]
        fft_size = (sp.shape[1] - 1) * 2
        coded = pyworld.code_spectral_envelope(sp, SAMPLE_RATE, 24)
        sp = pyworld.decode_spectral_envelope(np.ascontiguousarray(coded), SAMPLE_RATE, fft_size)
        coded_ap = pyworld.code_aperiodicity(ap, SAMPLE_RATE)
        ap = pyworld.decode_aperiodicity(np.ascontiguousarray(coded_ap), SAMPLE_RATE, fft_size)
    y = pyworld.synthesize(np.ascontiguousarray(f0), np.ascontiguousarray(sp),
                           np.ascontiguousarray(ap), SAMPLE_RATE, frame_period=5.0)
    return y.astype(np.float32)


def final_channel(x: np.ndarray, settings: CorpusSettings) -> np.ndarray:
    """The same last steps for every utterance: trim, crop, band limit, level, G.722 round trip."""
    import librosa
    x = np.asarray(x, dtype=np.float32)
    trimmed, _ = librosa.effects.trim(x, top_db=40, frame_length=512, hop_length=128)
    if len(trimmed) >= SAMPLE_RATE // 4:
        x = trimmed
    x = x[: int(settings.max_seconds * SAMPLE_RATE)]
    if settings.channel_rate < SAMPLE_RATE:
        # Some bona fide speakers exist only as 8 kHz recordings: every utterance goes through
        # the same band limit, so bandwidth says nothing about the class or the speaker.
        n = len(x)
        x = resample(resample(x, SAMPLE_RATE, settings.channel_rate), settings.channel_rate, SAMPLE_RATE)[:n]
    rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))
    if rms > 0:
        x = x * (10 ** (settings.target_rms_db / 20) / rms)
    peak = float(np.max(np.abs(x))) if len(x) else 0.0
    if peak > 0.99:
        x = x * (0.99 / peak)
    return g722_round_trip(x)


def render(item: Item, out_dir: Path, settings: CorpusSettings) -> None:
    """Make one utterance's audio and write it as FLAC (temp name first, then rename)."""
    rng = np.random.default_rng(item.seed)
    generator = ATTACKS[item.attack][0] if item.attack != "-" else "bonafide"
    with tempfile.TemporaryDirectory() as tmp:
        if generator == "bonafide":
            x = prompt_audio(item.prompt)
        elif item.text:
            x = tts(generator, item.text, item.prompt.language, rng, Path(tmp))
        else:
            x = vocode(generator, prompt_audio(item.prompt), rng)
    y = final_channel(x, settings)
    target = out_dir / f"{item.utt_id}.flac"
    partial = target.with_suffix(".tmp")
    sf.write(partial, y, SAMPLE_RATE, subtype="PCM_16", format="FLAC")
    partial.replace(target)


# ---------------------------------------------------------------- stage

def source_of(item: Item) -> str:
    if item.attack == "-":
        return item.prompt.path
    generator = ATTACKS[item.attack][0]
    return f"{generator}:{item.prompt.path}" if not item.text else f"{generator}:text={item.text}"


def write_readme(out: Path, counts: dict[str, dict[str, int]], settings: CorpusSettings) -> None:
    lines = ["# Mini corpus (generated by `python -m pipeline.corpus`)", "",
             "ASVspoof 2019 LA layout. Bona fide: Asterisk voice prompts shipped by Debian, real human "
             "recordings: asterisk-core-sounds-*-g722 by Allison Smith (en, es; CC-BY-SA-3.0), "
             "June Wallack (fr; CC-BY-SA-3.0), Carlo Flora (it; CC-BY-3.0) and ivrvoice.ru (ru; CC-BY-3.0); "
             "asterisk-prompt-it-menardi-wav (it; CC-BY-SA-3.0), asterisk-prompt-es-co (es, Colombia; GPL) "
             "and asterisk-prompt-fr-armelle (fr, Armelle Desjardins; GPL-2+); and the volunteer voices "
             "of KDE's ktuberling-data (words in 23 languages) and klettres-data (letters and syllables "
             "in 20 languages), both GPL-2+, whose short recordings are joined "
             f"{settings.words_per_utterance} to an utterance. A language's ktuberling and klettres voices "
             "may be one person: they always share a partition. The copyright files of the "
             "packages used are in licenses/. Vocoded spoofs are derived from these recordings and carry "
             "the same licences. TTS spoofs speak sentences written for this project.", "",
             f"Channel: every utterance is trimmed, band-limited to {settings.channel_rate // 2} Hz, "
             f"set to {settings.target_rms_db:g} dBFS RMS, passed through G.722 and stored as 16 kHz "
             "16-bit FLAC.", "",
             "`sources.tsv` names each utterance's source file or generator and text.", "",
             "## Attacks", "", "| id | generator | partitions |", "| --- | --- | --- |"]
    for attack, (_, description) in ATTACKS.items():
        parts = [p for p in PARTITIONS if attack in settings.attacks[p]]
        lines.append(f"| {attack} | {description} | {', '.join(parts) or '-'} |")
    lines += ["", "## Counts", "", "| partition | speakers | bona fide | spoof |", "| --- | --- | --- | --- |"]
    for part in PARTITIONS:
        lines.append(f"| {part} | {', '.join(settings.partition_speakers[part])} | "
                     f"{counts[part]['bonafide']} | {counts[part]['spoof']} |")
    (out / "README.md").write_text("\n".join(lines) + "\n")


def copy_licences(settings: CorpusSettings, licenses: Path) -> None:
    """Copy the Debian copyright file of every package that ships a voice folder used here."""
    licenses.mkdir(parents=True, exist_ok=True)
    packages = set()
    folders = [Path(settings.sources) / f for f in settings.speakers] + [Path(f) for f in settings.word_voices]
    for folder in sorted(folders):
        try:
            found = subprocess.run(["dpkg-query", "-S", str(folder)],
                                   capture_output=True, text=True, check=False).stdout
        except FileNotFoundError:  # not a Debian system: the recordings' licences are the user's to keep
            return
        for line in found.splitlines():
            packages.update(p.strip() for p in line.split(":")[0].split(","))
    for package in sorted(packages):
        copyright_file = Path(f"/usr/share/doc/{package}/copyright")
        if copyright_file.exists():
            shutil.copy(copyright_file, licenses / f"{package}.copyright")


def build_corpus(settings: CorpusSettings, out: Path, n_jobs: int | None = None) -> dict:
    """Build the whole mini corpus into out (replacing what is there). Returns counts per partition."""
    n_jobs = n_jobs or settings.n_jobs
    prompts = find_prompts(settings)
    plans = {part: plan_partition(part, prompts, settings) for part in PARTITIONS}
    for tool, generators in (("espeak-ng", {"espeak"}), ("flite", {"flite"}), ("text2wave", {"festival"})):
        needed = any(ATTACKS[i.attack][0] in generators for plan in plans.values() for i in plan if i.attack != "-")
        if needed and shutil.which(tool) is None:
            raise CorpusError(f"{tool} is not installed; run `make system-deps` (Debian packages)")
    if out.exists():
        shutil.rmtree(out)
    (out / "ASVspoof2019_LA_cm_protocols").mkdir(parents=True)
    counts = {}
    for part in PARTITIONS:
        flac_dir = audio_dir(out, part)
        flac_dir.mkdir(parents=True)
        items = plans[part]
        jobs = Parallel(n_jobs=n_jobs, return_as="generator_unordered")(
            delayed(render)(item, flac_dir, settings) for item in items)
        for _ in tqdm(jobs, total=len(items), desc=f"corpus {part}", unit="utt"):
            pass
        protocol_path(out, part).write_text(
            "".join(f"{i.speaker} {i.utt_id} - {i.attack} {i.key}\n" for i in items))
        with open(out / "sources.tsv", "a") as f:
            for i in items:
                f.write(f"{part}\t{i.utt_id}\t{i.attack}\t{source_of(i)}\n")
        counts[part] = {"bonafide": sum(i.key == "bonafide" for i in items),
                        "spoof": sum(i.key == "spoof" for i in items)}
    copy_licences(settings, out / "licenses")
    write_readme(out, counts, settings)
    return counts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", default="data/mini_corpus")
    args = parser.parse_args(argv)
    settings = load_settings(args.params)
    out = Path(args.out)
    if not settings.corpus.build:
        # The real corpus is used (data.root points at it): leave an empty, explained output.
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        (out / "README.md").write_text("corpus.build is false: no mini corpus was built.\n")
        return 0
    try:
        counts = build_corpus(settings.corpus, out)
    except (CorpusError, AudioError) as err:
        print(f"corpus: {err}", file=sys.stderr)
        return 1
    for part, c in counts.items():
        print(f"{part}: {c['bonafide']} bona fide, {c['spoof']} spoof")
    return 0


if __name__ == "__main__":
    sys.exit(main())
