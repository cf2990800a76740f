"""How the pipeline scores on a CPU: batches capped in frames, glibc's malloc kept from unmapping."""
import numpy as np
import pytest
import torch

from pipeline.scoring import scorer as scoring

CPU = torch.device("cpu")


@pytest.mark.slow
def test_scoring_on_a_cpu_caps_the_frames_of_a_batch_and_keeps_the_scores(tmp_path, monkeypatch):
    """eval_loader keeps CPU batches within CPU_BATCH_FRAMES (not batch_size whole utterances), and
    an utterance's score does not depend on the batch it was scored in."""
    from conftest import train_tiny_model
    from pipeline.data.dataset import ShardDataset
    from pipeline.data.shards import open_partition
    from pipeline.scoring.modelfile import ModelFile
    from pipeline.settings import FeatureSettings
    model_file = ModelFile.load(train_tiny_model(tmp_path, precision="fp32"))
    model = model_file.network()
    dataset = ShardDataset(open_partition(tmp_path / "features/dev", FeatureSettings()), frames=32, train=False,
                           eval_input="whole", streams=model_file.network_streams)
    lengths = dataset.eval_lengths()
    assert set(lengths) == {32, 64}
    uncapped, _ = scoring.score_dataset(model, dataset, 64, CPU, "fp32")
    monkeypatch.setattr(scoring, "CPU_BATCH_FRAMES", 128)
    batches = list(scoring.eval_loader(dataset, 64, 0, CPU).batch_sampler)
    assert max(len(b) for b in batches if lengths[b[0]] == 32) == 4  # 128 // 32
    assert max(len(b) for b in batches if lengths[b[0]] == 64) == 2
    capped, _ = scoring.score_dataset(model, dataset, 64, CPU, "fp32")
    one_by_one, _ = scoring.score_dataset(model, dataset, 1, CPU, "fp32")
    np.testing.assert_allclose(capped, uncapped, atol=1e-5)
    np.testing.assert_allclose(capped, one_by_one, atol=1e-5)


def test_the_allocator_keeps_freed_memory_on_glibc():
    import platform

    from pipeline.scoring.scorer import tune_allocator
    if platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt is glibc's")
    assert tune_allocator() and tune_allocator()  # and it may be called again
