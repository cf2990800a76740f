"""The mini corpus builder: real speech from installable packages, spoofs made here, one channel for all.

The `corpus` command (pipeline/corpus.py) runs this; see its docstring.
"""
from __future__ import annotations

import random
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path

import numpy as np
import soundfile as sf
from joblib import Parallel, delayed
from tqdm import tqdm

from features import resample
from pipeline.data.protocol import audio_dir, protocol_path
from pipeline.errors import PipelineError
from pipeline.mini.generators import ATTACKS, GeneratorError, generate, prepare
from pipeline.mini.recordings import ARCHIVE_SEPARATOR, find_recordings, read_recording, recording_seconds
from pipeline.settings import PARTITIONS, CorpusSettings

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
# Asterisk ships `silence/1` .. `silence/10`: that many seconds of (near) digital silence for its
# dial plans, not speech. Levelled to target_rms_db they became loud coding noise labelled bona fide.
NOT_SPEECH_FOLDERS = {"silence"}
# A source whose peak stays below this (-50 dBFS) holds no speech: refused by name, not levelled up.
SILENT_PEAK = 10 ** (-50 / 20)
# Utterances per parallel task (see render_chunks), and for Kokoro, whose model load (and the
# worker restart that follows it, see render_chunks) costs seconds.
RENDER_CHUNK = 20
KOKORO_CHUNK = 50
# Seconds per utterance on one core of the costliest generators (python bench/corpus.py), others
# about 0.1 s. Only the order in which chunks are handed out depends on them: the costliest
# first, so that the last chunks, which one worker may finish while the other has nothing left,
# are short.
GENERATOR_SECONDS = {"kokoro": 1.8, "mel80": 0.5, "world_spss": 0.43, "festival": 0.2, "openjtalk": 0.16}

# IVR-style prompts, written for this project in the languages of the bona fide speakers, so
# TTS spoofs say the same kind of thing as the bona fide prompts (Japanese for the Japanese TTS
# engines, which speak no other language). {n} a number, {d} a digit.
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
    "ja": [
        "口座番号を入力し、最後にシャープを押してください。", "新しいメッセージが{n}件あります。",
        "お客様のお電話は{n}番目にお繋ぎします。", "おかけになった電話番号は現在使われておりません。",
        "そのままお待ちください。担当者にお繋ぎします。", "メインメニューに戻るには{d}を押してください。",
        "会議室の番号は{n}です。", "お待ちいただく時間は約{d}分です。",
        "申し訳ありません。その内線は現在ご利用いただけません。",
        "発信音のあとにメッセージを録音してください。", "残高は{n}円です。",
    ],
}


class CorpusError(PipelineError, RuntimeError):
    pass


@dataclass(frozen=True)
class Prompt:
    """One recording (an Asterisk prompt, a game's spoken line), or a few short ones joined into
    one utterance (words or letters of the KDE voices)."""
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
    return recording_seconds(str(path))


def language_of(folder: str) -> str:
    """`en_US_f_Allison` -> en, `pt_BR` -> pt, `sr@latin` -> sr."""
    return re.split(r"[_@]", Path(folder).name)[0]


def find_prompts(settings: CorpusSettings) -> dict[str, list[Prompt]]:
    """Prompts per speaker, sorted, within the duration limits: each Asterisk recording, and the
    short recordings of each word voice joined in groups of words_per_utterance (in file-name
    order, so the same words go together on every machine), and each line of a game voice."""
    by_speaker: dict[str, list[Prompt]] = {}
    for folder, speaker in sorted(settings.speakers.items()):
        voice_dir = Path(settings.sources) / folder
        if not voice_dir.is_dir():
            raise CorpusError(f"{voice_dir}: voice folder missing; install the Asterisk prompts "
                              f"(make system-deps) or fix corpus.sources / corpus.speakers")
        for path in sorted(p for p in voice_dir.rglob("*") if p.suffix in PROMPT_SUFFIXES):
            if NOT_SPEECH_FOLDERS & set(path.relative_to(voice_dir).parts[:-1]):
                continue
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
    for speaker, voice in sorted(settings.game_voices.items()):
        lines = find_recordings(voice["files"])
        if not lines:
            raise CorpusError(f"corpus.game_voices.{speaker}: no recordings match {voice['files']}; install "
                              f"the game's Debian package (make system-deps) or fix the pattern")
        for line in lines:
            if settings.min_seconds <= recording_seconds(line) <= settings.max_seconds:
                by_speaker.setdefault(speaker, []).append(Prompt((line,), speaker, voice["language"]))
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
        is_tts = ATTACKS[attack].tts
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
                text = make_text(ATTACKS[attack].language or prompt.language, rng)
            specs.append((attack, prompt, text))
    rng.shuffle(specs)
    letter = partition[0].upper()
    return [Item(f"MINI_{letter}_{i + 1:07d}", prompt.speaker, attack, prompt, text, rng.getrandbits(32))
            for i, (attack, prompt, text) in enumerate(specs)]


# ---------------------------------------------------------------- audio generators

def read_prompt(path: str) -> np.ndarray:
    """A prompt file as float32 mono at 16 kHz (G.722 decoded here; game formats by
    pipeline.mini.recordings; WAV/GSM/Ogg as any audio file)."""
    if path.endswith(".g722"):
        import G722
        pcm = G722.G722(SAMPLE_RATE, 64000).decode(Path(path).read_bytes())
        return np.array(pcm, dtype=np.float32) / 32768.0
    return read_recording(path, SAMPLE_RATE)


def prompt_audio(prompt: Prompt) -> np.ndarray:
    """A prompt's audio: its one recording, or its words, each trimmed of its own silence, joined
    by WORD_GAP_SECONDS of silence. A recording without speech (peak below -50 dBFS) is a
    CorpusError naming it."""
    recordings = [read_prompt(path) for path in prompt.paths]
    for path, x in zip(prompt.paths, recordings):
        peak = float(np.max(np.abs(x))) if len(x) else 0.0
        if peak < SILENT_PEAK:
            level = f"peak {20 * np.log10(peak):.0f} dBFS" if peak > 0 else "all zeros"
            raise CorpusError(f"{path}: no speech in this recording ({level}); remove it from the voice "
                              f"folder or its speaker from corpus.speakers / corpus.word_voices")
    if len(recordings) == 1:
        return recordings[0]
    import librosa
    gap = np.zeros(int(WORD_GAP_SECONDS * SAMPLE_RATE), np.float32)
    pieces = []
    for x in recordings:
        word, _ = librosa.effects.trim(x, top_db=40, frame_length=512, hop_length=128)
        pieces += [word, gap]
    return np.concatenate(pieces[:-1])


def g722_round_trip(x: np.ndarray) -> np.ndarray:
    import G722
    pcm = np.clip(np.round(x * 32767.0), -32768, 32767).astype(np.int16)
    coded = G722.G722(SAMPLE_RATE, 64000).encode(pcm)
    return np.array(G722.G722(SAMPLE_RATE, 64000).decode(coded), dtype=np.float32) / 32768.0


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
    if item.attack == "-":
        x = prompt_audio(item.prompt)
    else:
        attack = ATTACKS[item.attack]
        with tempfile.TemporaryDirectory() as tmp:
            try:
                x = generate(attack, None if attack.tts else prompt_audio(item.prompt), item.text,
                             item.prompt.language, np.random.default_rng(item.seed), Path(tmp))
            except GeneratorError as err:
                raise GeneratorError(f"{item.utt_id} ({item.attack}, from {source_of(item)}): {err}") from err
    y = final_channel(x, settings)
    target = out_dir / f"{item.utt_id}.flac"
    partial = target.with_suffix(".tmp")
    sf.write(partial, y, SAMPLE_RATE, subtype="PCM_16", format="FLAC")
    partial.replace(target)


def generator_of(item: Item) -> str:
    return ATTACKS[item.attack].generator if item.attack != "-" else ""


def render_chunks(items: list[Item]) -> list[list[Item]]:
    """Work units for the workers: items of one generator together, so a worker loads a neural
    TTS model once per chunk. (joblib's workers restart when their memory grows by 300 MB after
    their first task, which a model load does: per-item tasks reloaded the models every time.)"""
    ordered = sorted(items, key=lambda item: (generator_of(item), item.utt_id))
    chunks = []
    for generator, group in groupby(ordered, key=generator_of):
        group = list(group)
        size = KOKORO_CHUNK if generator == "kokoro" else RENDER_CHUNK
        chunks += [group[i:i + size] for i in range(0, len(group), size)]
    return chunks


def chunk_seconds(chunk: list[Item]) -> float:
    return sum(GENERATOR_SECONDS.get(generator_of(item), 0.1) for item in chunk)


def render_chunk(items: list[Item], out_dir: Path, settings: CorpusSettings) -> int:
    for item in items:
        render(item, out_dir, settings)
    return len(items)


# ---------------------------------------------------------------- stage

def source_of(item: Item) -> str:
    if item.attack == "-":
        return item.prompt.path
    generator = ATTACKS[item.attack].generator
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
             "may be one person: they always share a partition. And the voice acting of three freeware "
             "games, one utterance per spoken line: drascula (Drascula: The Vampire Strikes Back, English "
             "cast; Alcachofa Soft, BSD-like licence), flight-of-the-amazon-queen (Joe King and the "
             "characters of five dialogues; BSD-like licence) and fillets-ng-data-cs / -nl (Fish Fillets "
             "NG, the Czech and the Dutch dub of the two fish; GPL-2); a game's cast stays in one "
             "partition, as one actor may play several characters. The copyright files of the "
             "packages used are in licenses/. Vocoded spoofs are derived from these recordings and carry "
             "the same licences. TTS spoofs speak sentences written for this project.", "",
             f"Channel: every utterance is trimmed, band-limited to {settings.channel_rate // 2} Hz, "
             f"set to {settings.target_rms_db:g} dBFS RMS, passed through G.722 and stored as 16 kHz "
             "16-bit FLAC.", "",
             "`sources.tsv` names each utterance's source file or generator and text.", "",
             "## Attacks", "", "| id | generator | licence | partitions |", "| --- | --- | --- | --- |"]
    for attack_id, attack in ATTACKS.items():
        parts = [p for p in PARTITIONS if attack_id in settings.attacks[p]]
        lines.append(f"| {attack_id} | {attack.description} | {attack.licence} | {', '.join(parts) or '-'} |")
    lines += ["", "## The same corpus on another CPU", "",
              "Every generator is seeded per utterance and runs with one BLAS and OpenMP thread, so a "
              "rebuild on the same kind of CPU gives the same files (and the same hash in dvc.lock) "
              "whatever the thread count. Across CPUs: under the AVX2 code paths of OpenBLAS and numpy "
              "every generator wrote the same bytes as under AVX-512, except the mel inversion (A14), "
              "whose matrix products go through BLAS; the neural TTS (A08 Piper, A09 Kokoro) run in ONNX "
              "Runtime, whose kernels follow the CPU. Two AVX-512 machines (an AMD EPYC with AVX512_BF16, "
              "an Intel Xeon with AMX) built identical corpora. On an AVX2-only CPU expect A08, A09 and "
              "A14 to differ slightly: another corpus hash, so every later stage reruns and the metrics "
              "move by about the spread between seeds (`python bench/generator_hashes.py` compares).", "",
              "## Counts", "", "| partition | speakers | bona fide | spoof |", "| --- | --- | --- | --- |"]
    for part in PARTITIONS:
        lines.append(f"| {part} | {', '.join(settings.partition_speakers[part])} | "
                     f"{counts[part]['bonafide']} | {counts[part]['spoof']} |")
    (out / "README.md").write_text("\n".join(lines) + "\n")


def copy_licences(settings: CorpusSettings, licenses: Path) -> None:
    """Copy the Debian copyright file of every package that ships a voice folder used here."""
    licenses.mkdir(parents=True, exist_ok=True)
    packages = set()
    folders = [Path(settings.sources) / f for f in settings.speakers] + [Path(f) for f in settings.word_voices]
    folders += [Path(line.split(ARCHIVE_SEPARATOR)[0]).parent for voice in settings.game_voices.values()
                for line in find_recordings(voice["files"])[:1]]
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
    prepare({ATTACKS[i.attack].generator for plan in plans.values() for i in plan if i.attack != "-"})
    if out.exists():
        shutil.rmtree(out)
    (out / "ASVspoof2019_LA_cm_protocols").mkdir(parents=True)
    # Every partition's chunks in one parallel pass, the costliest first (see GENERATOR_SECONDS).
    tasks = []
    for part in PARTITIONS:
        audio_dir(out, part).mkdir(parents=True)
        tasks += [(chunk, audio_dir(out, part)) for chunk in render_chunks(plans[part])]
    tasks.sort(key=lambda task: -chunk_seconds(task[0]))
    jobs = Parallel(n_jobs=n_jobs, return_as="generator_unordered")(
        delayed(render_chunk)(chunk, flac_dir, settings) for chunk, flac_dir in tasks)
    with tqdm(total=sum(len(plan) for plan in plans.values()), desc="corpus", unit="utt") as bar:
        for done in jobs:
            bar.update(done)
    counts = {}
    for part in PARTITIONS:
        items = plans[part]
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
