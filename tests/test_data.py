"""Tests for zoo.data (no downloads; the shared Imagenette folder is optional)."""

from __future__ import annotations

import json
import logging
import tarfile
from pathlib import Path

import pytest
import torch
from PIL import Image
from torchvision.datasets.utils import calculate_md5

import zoo.data.cache as zcache
from zoo.data import MINI_ROOT, ImageDataModule, UnpaddedDistributedSampler, read_class_list

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "imagenette2-224"
shared_data = pytest.mark.shared_data


def make_tree(root: Path, classes=("a", "b", "c"), per_class: int = 4, size=(40, 30)) -> Path:
    """A tiny ImageFolder tree ``root/{train,val}/<class>/<i>.jpg`` of solid-colour JPEGs."""
    for split in ("train", "val"):
        for ci, c in enumerate(classes):
            d = root / split / c
            d.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                Image.new("RGB", size, (40 * ci, 10 * i, 200)).save(d / f"{i}.jpg", quality=90)
    return root


def dm_kwargs(tmp_path: Path, **kw):
    return dict(num_workers=0, batch_size=4, cache_dir=tmp_path / "cache", **kw)


# ------------------------------------------------------------------ embedded set
def test_embedded_mini_counts_and_size():
    classes = json.loads((MINI_ROOT / "classes.json").read_text())
    assert len(classes) == 10
    for split, n in (("train", 60), ("val", 20)):
        dirs = sorted(p for p in (MINI_ROOT / split).iterdir() if p.is_dir())
        assert [d.name for d in dirs] == sorted(classes)
        assert all(len(list(d.glob("*.JPEG"))) == n for d in dirs)
    total = sum(p.stat().st_size for p in MINI_ROOT.rglob("*") if p.is_file())
    assert total < 10 * 2**20
    with Image.open(next((MINI_ROOT / "train").rglob("*.JPEG"))) as img:
        assert min(img.size) <= 112


def test_default_module_batches_at_train_and_val_res():
    dm = ImageDataModule(num_workers=0, batch_size=8, train_res=64, val_res=80, mean=None, std=None)
    assert dm.mean == (0.485, 0.456, 0.406) and dm.val_res == 80 and dm.train_res == 64
    assert dm.num_classes == 10 and dm.class_names[0] == "tench"
    dm.setup("fit")
    assert len(dm.train_dataset) == 600 and len(dm.val_dataset) == 200
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (8, 3, 64, 64) and x.dtype == torch.uint8 and y.dtype == torch.int64
    x, y = next(iter(dm.val_dataloader()))
    assert x.shape == (8, 3, 80, 80) and x.dtype == torch.uint8
    z = dm.normalize_batch(x)
    assert z.dtype == torch.float32 and -3 < z.mean() < 3
    xb, yb = dm.on_after_batch_transfer((x, y), 0)
    assert xb.dtype == torch.float32 and torch.equal(yb, y)


@pytest.mark.parametrize("aug", ["none", "basic", "randaugment", "trivialaugment"])
def test_augmentations_and_loader_normalisation(tmp_path, aug):
    root = make_tree(tmp_path / "data")
    dm = ImageDataModule(root=root, aug=aug, train_res=32, re_prob=0.5, normalize_in_loader=True,
                         **dm_kwargs(tmp_path))
    dm.setup("fit")
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32


def test_each_augmentation_policy_changes_the_batch():
    """The same embedded images under the same seed: each policy repeats itself exactly, and no two
    policies give the same tensors (so a policy that silently does nothing, e.g. randaugment = basic, fails)."""
    def batch(aug):
        dm = ImageDataModule(aug=aug, train_res=48, num_workers=0, batch_size=4)
        dm.setup("fit")
        torch.manual_seed(0)
        return torch.stack([dm.train_dataset[i][0] for i in (0, 70, 140, 210, 280, 350)])

    policies = ["none", "basic", "randaugment", "trivialaugment"]
    batches = {aug: batch(aug) for aug in policies}
    for aug in policies:
        assert batches[aug].shape == (6, 3, 48, 48) and batches[aug].dtype == torch.uint8
        assert torch.equal(batch(aug), batches[aug]), f"{aug} is not reproducible under a fixed seed"
    for i, a in enumerate(policies):
        for b in policies[i + 1:]:
            assert not torch.equal(batches[a], batches[b]), f"aug={a} and aug={b} give the same batch"


def test_bad_arguments_raise_value_error():
    for kw in ({"aug": "heavy"}, {"cache": "fp16"}, {"hflip": 2.0}, {"scale": (0.5, 0.1)},
               {"interpolation": "lanczos5"}, {"val_crop_pct": 0.0}, {"classes": "no/such/file.txt"}):
        with pytest.raises(ValueError):
            ImageDataModule(**kw)


# -------------------------------------------------------------------- classes
def test_class_subset_list_and_file(tmp_path):
    root = make_tree(tmp_path / "data")
    dm = ImageDataModule(root=root, classes=["c", "a"], **dm_kwargs(tmp_path))
    assert dm.num_classes == 2 and dm.class_names == ["c", "a"]
    dm.setup("fit")
    assert len(dm.train_dataset) == 8 and set(dm.train_dataset.targets) == {0, 1}
    txt = tmp_path / "subset.txt"
    txt.write_text("# my subset\nb\n\n")
    assert ImageDataModule(root=root, classes=str(txt), **dm_kwargs(tmp_path)).class_folders == ["b"]
    with pytest.raises(FileNotFoundError, match="missing"):
        ImageDataModule(root=root, classes=["a", "zz"], **dm_kwargs(tmp_path)).setup("fit")


def test_imagenet100_list():
    names = read_class_list("imagenet100")
    assert len(names) == len(set(names)) == 100 and all(n.startswith("n") and len(n) == 9 for n in names)


# ------------------------------------------------------------------ bad input
def test_missing_and_empty_root_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"does not exist.*ImageFolder"):
        ImageDataModule(root=tmp_path / "nope", **dm_kwargs(tmp_path)).setup("fit")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="is empty"):
        ImageDataModule(root=tmp_path / "empty", **dm_kwargs(tmp_path)).setup("fit")
    (tmp_path / "noimg" / "train" / "a").mkdir(parents=True)
    (tmp_path / "noimg" / "val" / "a").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no image files"):
        ImageDataModule(root=tmp_path / "noimg", **dm_kwargs(tmp_path)).setup("fit")


def _add_bad_files(root: Path) -> Path:
    d = root / "train" / "a"
    (d / "notes.txt").write_text("not an image")
    (d / "fake.jpg").write_text("text pretending to be a jpeg")
    good = (d / "0.jpg").read_bytes()
    big = d.parent / "big.jpg"
    Image.effect_noise((64, 64), 50).convert("RGB").save(big, quality=95)
    truncated = d / "truncated.jpg"
    truncated.write_bytes(big.read_bytes()[: len(big.read_bytes()) // 2])
    big.unlink()
    assert good  # the good files stay
    return truncated


@pytest.mark.parametrize("cache", ["none", "uint8"])
def test_non_images_and_truncated_jpeg_are_skipped_and_counted(tmp_path, caplog, cache):
    root = make_tree(tmp_path / "data")
    truncated = _add_bad_files(root)
    dm = ImageDataModule(root=root, cache=cache, train_res=32, **dm_kwargs(tmp_path))
    with caplog.at_level(logging.WARNING, logger="zoo.data"):
        dm.setup("fit")
        assert "skipped 2 non-image file(s)" in caplog.text
        # the truncated JPEG passes the scan (right signature) and fails at decode time
        n = len(dm.train_dataset)
        images = [dm.train_dataset[i][0] for i in range(n)]
    assert all(img.shape == (3, 32, 32) for img in images)
    if cache == "none":
        assert n == 13 and dm.train_dataset.num_bad == 1 and str(truncated) in caplog.text
    else:
        assert n == 12 and dm.train_dataset.num_bad == 1 and "1 undecodable" in caplog.text


# ------------------------------------------------------------------ uint8 cache
def test_uint8_cache_built_once_and_crops(tmp_path, monkeypatch):
    root = make_tree(tmp_path / "data")
    calls = []
    real = zcache.decode_square
    monkeypatch.setattr(zcache, "decode_square", lambda *a, **k: calls.append(1) or real(*a, **k))
    kw = dm_kwargs(tmp_path, root=root, cache="uint8", train_res=24, val_res=28)
    dm = ImageDataModule(**kw)
    assert dm.cache_short_side == 32  # floor(28 / 0.875)
    dm.prepare_data()
    dm.setup("fit")
    assert len(calls) == 24
    files = sorted((tmp_path / "cache").glob("*.npy"))
    assert len(files) == 2 and not list((tmp_path / "cache").glob("*.partial"))
    mtimes = [f.stat().st_mtime_ns for f in files]
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 24, 24) and x.dtype == torch.uint8
    x, _ = next(iter(dm.val_dataloader()))
    assert x.shape == (4, 3, 28, 28) and x.dtype == torch.uint8

    dm2 = ImageDataModule(**kw)
    dm2.prepare_data()
    dm2.setup("fit")
    assert len(calls) == 24, "second setup must not decode again"
    assert [f.stat().st_mtime_ns for f in files] == mtimes
    assert torch.equal(dm2.val_dataset[0][0], dm.val_dataset[0][0])


def test_uint8_cache_key_changes_with_config_and_data(tmp_path):
    root = make_tree(tmp_path / "data")
    base = dm_kwargs(tmp_path, root=root, cache="uint8", train_res=24)

    def cache_files(**kw):
        dm = ImageDataModule(**{**base, **kw})
        return {dm._cache_file(s, build=False).name for s in ("train", "val")}

    a = cache_files()
    assert a != cache_files(cache_short_side=40)
    assert a != cache_files(classes=["a", "b"])
    assert a != cache_files(interpolation="bicubic")
    # changing one image's content (size / mtime) changes the key: never a stale read
    Image.new("RGB", (50, 30), (1, 2, 3)).save(root / "train" / "a" / "0.jpg", quality=50)
    b = cache_files()
    assert a != b and len(a & b) == 1  # only the train key changed


def test_cache_dir_inside_root_is_refused(tmp_path):
    root = make_tree(tmp_path / "data")
    with pytest.raises(ValueError, match="inside the data root"):
        ImageDataModule(root=root, cache="uint8", cache_dir=root / ".cache", num_workers=0)


# --------------------------------------------------------------------- sampler
def test_unpadded_sampler_covers_every_index_once():
    parts = [list(UnpaddedDistributedSampler(10, num_replicas=3, rank=r)) for r in range(3)]
    flat = [i for p in parts for i in p]
    assert sorted(flat) == list(range(10)) and len(flat) == 10
    assert [len(UnpaddedDistributedSampler(10, num_replicas=3, rank=r)) for r in range(3)] == [4, 3, 3]
    assert list(UnpaddedDistributedSampler(2, num_replicas=4, rank=3)) == []
    with pytest.raises(ValueError):
        UnpaddedDistributedSampler(10, num_replicas=3, rank=3)
    with pytest.raises(ValueError):
        UnpaddedDistributedSampler(10)  # no process group


# --------------------------------------------------------------------- download
def test_download_from_local_tarball(tmp_path):
    src = make_tree(tmp_path / "src" / "tiny")
    archive = tmp_path / "tiny.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src, arcname="tiny")
    dest = tmp_path / "datasets" / "tiny"
    dm = ImageDataModule(root=dest, download=True, url=archive.as_uri(), md5=calculate_md5(str(archive)),
                         **dm_kwargs(tmp_path))
    dm.prepare_data()
    dm.setup("fit")
    assert dm.num_classes == 3 and len(dm.train_dataset) == 12
    assert (dest.parent / "tiny.tgz").is_file()

    bad = ImageDataModule(root=tmp_path / "other" / "tiny", download=True, url=archive.as_uri(), md5="0" * 32,
                          **dm_kwargs(tmp_path))
    with pytest.raises(ValueError, match="md5"):
        bad.prepare_data()


# ------------------------------------------------------------ progressive resize
def test_progressive_resizing_schedule(tmp_path):
    root = make_tree(tmp_path / "data")
    dm = ImageDataModule(root=root, train_res=40, res_schedule={0: 24, 2: 32, "5": 40}, **dm_kwargs(tmp_path))
    assert [dm.train_res_for_epoch(e) for e in range(7)] == [24, 24, 32, 32, 32, 40, 40]
    assert dm.cache_short_side == 45
    dm.setup("fit")
    for epoch, res in ((0, 24), (2, 32), (6, 40)):
        assert dm.set_epoch(epoch) == res
        x, _ = next(iter(dm.train_dataloader()))
        assert x.shape[-2:] == (res, res)
    dm2 = ImageDataModule(root=root, res_schedule={3: 32}, train_res=24, **dm_kwargs(tmp_path))
    assert dm2.train_res_for_epoch(0) == 24 and dm2.train_res_for_epoch(3) == 32


def test_progressive_resizing_reaches_workers(tmp_path):
    root = make_tree(tmp_path / "data")
    dm = ImageDataModule(root=root, res_schedule={0: 24, 1: 32}, train_res=32, num_workers=1, batch_size=4,
                         persistent_workers=False, cache_dir=tmp_path / "cache")
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert next(iter(loader))[0].shape[-1] == 24
    dm.set_epoch(1)
    assert next(iter(loader))[0].shape[-1] == 32


# ------------------------------------------------------------- shared Imagenette
@shared_data
@pytest.mark.skipif(not SHARED.is_dir(), reason=f"{SHARED} not present")
def test_shared_imagenette_scan():
    dm = ImageDataModule(root=SHARED, num_workers=0, batch_size=4, val_res=64)
    assert dm.num_classes == 10 and dm.class_names[-1] == "parachute"
    dm.setup("validate")
    assert len(dm.val_dataset) == 3925
    x, _ = next(iter(dm.val_dataloader()))
    assert x.shape == (4, 3, 64, 64)


# ------------------------------------------------------------ Lightning wiring
class _Probe:
    """Tiny LightningModule that records the batches it sees (built lazily to keep imports light)."""

    @staticmethod
    def make():
        import lightning as L

        class Probe(L.LightningModule):
            def __init__(self):
                super().__init__()
                self.lin = torch.nn.Linear(3, 3)
                self.seen: list[tuple[int, str, tuple[int, ...], torch.dtype]] = []

            def on_train_epoch_start(self):
                self.trainer.datamodule.set_epoch(self.current_epoch)

            def training_step(self, batch, batch_idx):
                x, y = batch
                self.seen.append((self.current_epoch, "train", tuple(x.shape), x.dtype))
                return self.lin(x.mean((2, 3))).sum()

            def validation_step(self, batch, batch_idx):
                self.seen.append((self.current_epoch, "val", tuple(batch[0].shape), batch[0].dtype))

            def configure_optimizers(self):
                return torch.optim.SGD(self.parameters(), lr=0.1)

        return Probe()


def test_lightning_fit_gets_normalised_batches_at_scheduled_res(tmp_path):
    import lightning as L

    root = make_tree(tmp_path / "data")
    dm = ImageDataModule(root=root, train_res=32, val_res=40, res_schedule={0: 24, 1: 32}, re_prob=0.5,
                         num_workers=1, batch_size=4, cache_dir=tmp_path / "cache")
    model = _Probe.make()
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        reload_dataloaders_every_n_epochs=1, use_distributed_sampler=False,
                        default_root_dir=tmp_path)
    trainer.fit(model, datamodule=dm)
    train = {(e, s[-1]) for e, kind, s, dt in model.seen if kind == "train" and dt == torch.float32}
    val = {s[-1] for e, kind, s, dt in model.seen if kind == "val" and dt == torch.float32}
    assert train == {(0, 24), (1, 32)} and val == {40}
    assert len([1 for _, kind, *_ in model.seen if kind == "train"]) == 2 * 3  # 12 images, drop_last, batch 4


def test_ddp_samplers_are_chosen_when_distributed(tmp_path, monkeypatch):
    import zoo.data.datamodule as zdm
    from torch.utils.data import DistributedSampler

    root = make_tree(tmp_path / "data", per_class=5)  # 15 images per split
    dm = ImageDataModule(root=root, train_res=16, **dm_kwargs(tmp_path))
    dm.setup("fit")
    seen = []
    for rank in range(2):
        monkeypatch.setattr(zdm, "_dist_info", lambda rank=rank: (2, rank))
        train, val = dm.train_dataloader(), dm.val_dataloader()
        assert isinstance(train.sampler, DistributedSampler)
        assert isinstance(val.sampler, UnpaddedDistributedSampler)
        seen += [int(y) for _, ys in val for y in ys]
    assert len(seen) == 15 and sorted(seen) == sorted(dm.val_dataset.targets)
