"""The dark-knowledge page's engine: soft targets, the images it picks, and uploaded or drawn pictures."""

import io
import math
import struct
import subprocess
import tempfile
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from kdcore import dark
from tests.synthetic import synthetic

DIGITS = tuple(str(i) for i in range(10))


class FakeDataset:
    def __init__(self, name="mnist", image_shape=(1, 28, 28)):
        self.name, self.image_shape = name, image_shape


def _png(img: Image.Image, fmt="PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def _centre_of_mass(img: torch.Tensor) -> tuple[float, float]:
    a = img[0].double()
    yy, xx = torch.meshgrid(torch.arange(a.shape[0]), torch.arange(a.shape[1]), indexing="ij")
    return float((a * yy).sum() / a.sum()), float((a * xx).sum() / a.sum())


# --- temperature -----------------------------------------------------------------------------


def test_entropy_rises_with_temperature():
    logits = torch.tensor([6.0, 2.0, 1.0, 0.5, -1.0, 0.0, 0.3, -2.0, 1.5, 3.0])
    temps = [1, 1.5, 2, 3, 4, 6, 8, 12, 20]
    curve = dark.entropy_curve(logits, temps)
    assert all(b > a for a, b in zip(curve, curve[1:]))
    assert curve[-1] < math.log2(10) + 1e-6


def test_entropy_curve_averages_over_images():
    logits = torch.tensor([[9.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    single = [dark.entropy_curve(row, [2.0])[0] for row in logits]
    assert dark.entropy_curve(logits, [2.0])[0] == pytest.approx(sum(single) / 2)
    assert single[1] == pytest.approx(math.log2(3))


def test_soft_targets_at_t1_are_the_softmax():
    logits = torch.randn(5, 10)
    assert torch.allclose(dark.soft_targets_at(logits, 1.0), torch.softmax(logits, 1))
    view = dark.teacher_view(logits[0], 4.0)
    assert torch.allclose(view["p1"], torch.softmax(logits[0], 0))
    assert view["entropy_T"] > view["entropy_1"]
    assert view["pred"] == int(logits[0].argmax())


def test_bad_temperature_is_refused():
    with pytest.raises(ValueError, match="temperature"):
        dark.soft_targets_at(torch.zeros(10), 0)


# --- class similarity ------------------------------------------------------------------------


def _fours_look_like_nines(n=50):
    """Logits where 4s give their second-largest score to 9, all other images are clear-cut."""
    y = torch.arange(10).repeat(n)
    logits = torch.zeros(len(y), 10)
    logits[torch.arange(len(y)), y] = 8.0
    logits[y == 4, 9] = 5.0
    return logits, y


def test_similarity_rows_are_mean_soft_targets():
    logits, y = _fours_look_like_nines()
    sim = dark.class_similarity(logits, y, 4.0)
    assert sim.shape == (10, 10)
    assert torch.allclose(sim.sum(1), torch.ones(10))
    assert int(sim[4].argsort(descending=True)[1]) == 9
    assert torch.allclose(sim[2], dark.soft_targets_at(logits[y == 2], 4.0).mean(0))


def test_confusable_pair_reads_as_a_sentence():
    logits, y = _fours_look_like_nines()
    sim = dark.class_similarity(logits, y, 4.0)
    pairs = dark.confusable_pairs(sim, DIGITS, top=3)
    assert pairs[0][:2] == ("4", "9") and 0 < pairs[0][2] < 1
    text = dark.describe_pairs(pairs, 4.0)
    assert text[0].startswith("A 4 looks most like a 9 (mean soft probability ")
    assert text[0].endswith(f"{pairs[0][2] * 100:.1f} % at T = 4).")
    assert len(text) == 3


def test_articles_follow_speech():
    assert dark.class_phrase("8") == "an 8"
    assert dark.class_phrase("4 - four") == "a 4"
    assert dark.class_phrase("airplane") == "an airplane"
    assert dark.class_phrase("Ankle boot") == "an ankle boot"
    assert dark.class_phrase("T-shirt/top") == "a T-shirt/top"
    assert dark.class_phrase("cat") == "a cat"
    pairs = [("8", "3", 0.05), ("8", "0", 0.02)]
    sentences = dark.describe_pairs(pairs, 2.5)
    assert sentences[0].startswith("An 8 looks most like a 3")
    assert sentences[1].startswith("An 8 looks next most like a 0") and "T = 2.5" in sentences[1]


# --- picking images --------------------------------------------------------------------------


def _teacher_outputs(n=400, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (n,), generator=g)
    logits = torch.randn(n, 10, generator=g)
    logits[torch.arange(n), y] += torch.rand(n, generator=g) * 8  # mostly right, some unsure or wrong
    return logits, y


def test_pick_by_class_and_at_random():
    logits, y = _teacher_outputs()
    idx = dark.pick_images(logits, y, "class", cls=3, k=12)
    assert len(idx) == min(12, int((y == 3).sum())) and bool((y[idx] == 3).all())
    rand = dark.pick_images(logits, y, "random", k=12, seed=1)
    assert len(rand) == 12 and len(set(rand.tolist())) == 12
    assert torch.equal(rand, dark.pick_images(logits, y, "random", k=12, seed=1))
    assert not torch.equal(rand, dark.pick_images(logits, y, "random", k=12, seed=2))


def test_the_opening_pick_shows_right_answers_with_a_clear_runner_up_class_by_class():
    logits, y = _teacher_outputs()
    idx = dark.pick_images(logits, y, "telling", k=12)
    probs = torch.softmax(logits, 1)
    assert len(idx) == 12 and bool((probs[idx].argmax(1) == y[idx]).all())  # the teacher is right
    assert len(set(y[idx[:10]].tolist())) == 10  # one per class before any class comes twice
    # Each class's pick has that class's largest runner-up share among its right answers.
    second = probs.topk(2, dim=1).values[:, 1]
    right = probs.argmax(1) == y
    for i in idx[:10].tolist():
        same = right & (y == y[i])
        assert second[i] == second[same].max()
    # The first images are the most telling of all: a confident 0 at 99.9 % never opens the page.
    assert second[idx[0]] == second[idx[:10]].max() and second[idx[0]] > 0.1


def test_ambiguous_images_have_the_highest_entropy():
    logits, y = _teacher_outputs()
    idx = dark.pick_images(logits, y, "ambiguous", k=10)
    ent = dark.entropy_bits(torch.softmax(logits, 1))
    rest = torch.ones(len(y), dtype=torch.bool)
    rest[idx] = False
    assert ent[idx].min() >= ent[rest].max()


def test_mistakes_are_mistakes_most_confident_first():
    logits, y = _teacher_outputs()
    idx = dark.pick_images(logits, y, "mistakes", k=12)
    assert len(idx) > 0
    assert bool((logits[idx].argmax(1) != y[idx]).all())
    conf = torch.softmax(logits[idx], 1).max(1).values
    assert bool((conf[:-1] >= conf[1:]).all())


def test_no_mistakes_gives_an_empty_pick():
    y = torch.arange(10)
    logits = torch.eye(10) * 10
    idx = dark.pick_images(logits, y, "mistakes")
    assert idx.numel() == 0 and idx.dtype == torch.long


@pytest.mark.parametrize(
    "how,cls,match",
    [
        ("best", None, "class, random, ambiguous, mistakes"),
        ("class", None, "cls must be a class index from 0 to 9"),
        ("class", 10, "cls must be a class index from 0 to 9"),
    ],
)
def test_bad_pick_arguments_name_the_allowed_values(how, cls, match):
    logits, y = _teacher_outputs(50)
    with pytest.raises(ValueError, match=match):
        dark.pick_images(logits, y, how, cls=cls)


# --- uploads ---------------------------------------------------------------------------------


def _dark_digit_on_white(size=(120, 90), offset=(10, 5)) -> Image.Image:
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    x, y = offset
    d.ellipse([(x + 10, y + 5), (x + 50, y + 75)], outline=(20, 20, 20), width=7)  # a "0"
    return img


def _colour_picture(size=(96, 64)) -> Image.Image:
    """Smooth colour gradients with a few shapes, so every channel has many different values."""
    w, h = size
    yy, xx = np.mgrid[:h, :w]
    arr = np.stack([xx * 255 // (w - 1), yy * 255 // (h - 1), (xx + yy) * 255 // (w + h - 2)], axis=2)
    img = Image.fromarray(arr.astype(np.uint8))
    d = ImageDraw.Draw(img)
    d.ellipse([(20, 10), (60, 50)], fill=(240, 200, 20))
    d.rectangle([(65, 5), (90, 30)], fill=(10, 40, 160))
    return img


def _png_bytes(samples: np.ndarray, bit_depth: int = 16) -> bytes:
    """A PNG written by hand (Pillow cannot write 16-bit colour): gray [H, W] or RGB [H, W, 3] samples."""
    h, w = samples.shape[:2]
    colour_type = 0 if samples.ndim == 2 else 2
    dtype = ">u2" if bit_depth == 16 else "u1"
    raw = b"".join(b"\0" + samples[r].astype(dtype).tobytes() for r in range(h))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", w, h, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def _to_16_bit(arr8: np.ndarray) -> np.ndarray:
    """The same picture at 16 bits: each 8-bit value v becomes v * 257 (0..65535), plus sub-step noise."""
    noise = np.random.default_rng(0).integers(-128, 129, arr8.shape)
    return np.clip(arr8.astype(np.int64) * 257 + noise, 0, 65535).astype(np.uint16)


MNIST = synthetic(n_train=4, n_test=2, shape=(1, 28, 28), name="mnist")
CIFAR = synthetic(n_train=4, n_test=2, shape=(3, 32, 32), name="cifar10")


def test_dark_digit_on_white_becomes_an_mnist_style_image():
    out = dark.image_from_upload(_png(_dark_digit_on_white()), FakeDataset())
    assert out.shape == (1, 28, 28) and out.dtype == torch.uint8
    assert out[0, :4].max() == 0 and out[0, -4:].max() == 0  # black background, white ink
    assert out.max() > 200
    rows = torch.nonzero(out[0] > 40)
    assert rows[:, 0].max() - rows[:, 0].min() <= 21  # fitted into the 20 x 20 box
    cy, cx = _centre_of_mass(out)
    assert abs(cy - 13.5) <= 1 and abs(cx - 13.5) <= 1


def test_jpeg_and_white_on_black_uploads_match_the_same_digit():
    light = dark.image_from_upload(_png(_dark_digit_on_white(), "JPEG"), FakeDataset())
    inverted = Image.fromarray(255 - np.asarray(_dark_digit_on_white()))
    dark_bg = dark.image_from_upload(_png(inverted), FakeDataset())
    assert (light.float() - dark_bg.float()).abs().mean() < 10


@pytest.mark.parametrize("name", list(dark.UPLOAD_FORMATS))
def test_every_accepted_format_gives_the_same_digit(name):
    reference = dark.image_from_upload(_png(_dark_digit_on_white()), MNIST)
    out = dark.image_from_upload(_png(_dark_digit_on_white(), name.upper()), MNIST)
    assert (out.float() - reference.float()).abs().mean() < 10


def test_the_page_offers_exactly_the_accepted_formats():
    extensions = [ext for exts in dark.UPLOAD_FORMATS.values() for ext in exts]
    assert sorted(dark.UPLOAD_EXTENSIONS) == sorted(extensions)
    assert {"png", "jpg", "jpeg", "gif", "bmp", "webp"} == set(extensions)
    assert dark.UPLOAD_FORMATS_TEXT == "PNG, JPEG, GIF, BMP or WebP"


def test_animated_gif_uses_its_first_frame():
    bar = Image.new("RGB", (120, 90), "white")
    ImageDraw.Draw(bar).rectangle([(55, 10), (65, 80)], fill=(20, 20, 20))  # a "1"
    buf = io.BytesIO()
    _dark_digit_on_white().save(buf, format="GIF", save_all=True, append_images=[bar], duration=100, loop=0)
    assert Image.open(io.BytesIO(buf.getvalue())).n_frames == 2
    first = dark.image_from_upload(_png(_dark_digit_on_white(), "GIF"), MNIST)
    assert torch.equal(dark.image_from_upload(buf.getvalue(), MNIST), first)


def test_colour_dataset_upload_is_square_cropped_and_resized():
    img = Image.new("RGB", (300, 200), (200, 30, 30))
    out = dark.image_from_upload(_png(img), FakeDataset("cifar10", (3, 32, 32)))
    assert out.shape == (3, 32, 32) and out.dtype == torch.uint8
    assert out[0].float().mean() == pytest.approx(200, abs=2)


def test_too_large_file_is_refused_with_the_limit():
    with pytest.raises(dark.ImageError, match="limit is 10 MB") as info:
        dark.image_from_upload(b"\0" * (20 * 1024 * 1024), FakeDataset())
    assert info.value.user_facing


def test_huge_image_is_refused_with_the_limit():
    blob = _png(Image.new("L", (5000, 4000), 255))
    with pytest.raises(dark.ImageError, match=r"5000 x 4000 pixels \(20.0 megapixels\); the limit is 16.8 megapixels"):
        dark.image_from_upload(blob, FakeDataset())


def test_small_file_of_a_huge_image_is_refused_before_decoding(monkeypatch):
    """A decompression bomb: 50 KB that would decode to 36 million pixels."""
    from PIL import PngImagePlugin

    blob = _png_bytes(np.zeros((6000, 6000), dtype=np.uint8), bit_depth=8)
    assert len(blob) < 100_000
    decoded = []
    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", lambda self: decoded.append(self))
    with pytest.raises(dark.ImageError, match="6000 x 6000 pixels"):
        dark.image_from_upload(blob, MNIST)
    assert decoded == []


def test_random_bytes_are_refused_with_advice():
    blob = np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    with pytest.raises(
        dark.ImageError, match="Could not read the image: the file is not a PNG, JPEG, GIF, BMP or WebP"
    ):
        dark.image_from_upload(blob, FakeDataset())


@pytest.mark.parametrize(
    "blob,name",
    [
        (b"%PDF-1.7\n" + b"%" * 100, "a PDF document"),
        (_png(_dark_digit_on_white(), "TIFF"), "a TIFF image"),
        (b"<?xml version='1.0'?><svg xmlns='http://www.w3.org/2000/svg'/>", "an SVG drawing"),
        (b"\0\0\0\x18ftypheic\0\0\0\0mif1heic", "a HEIC or AVIF photo"),
    ],
)
def test_other_formats_are_refused_by_name(blob, name):
    with pytest.raises(dark.ImageError, match=f"This file is {name}, which is not accepted: "):
        dark.image_from_upload(blob, MNIST)


def test_blank_upload_is_refused():
    with pytest.raises(dark.ImageError, match="blank"):
        dark.image_from_upload(_png(Image.new("L", (64, 64), 255)), FakeDataset())


# --- uploads never reach a program -----------------------------------------------------------------


@pytest.fixture
def sandbox(monkeypatch, tmp_path):
    """Records every program start and every EPS parse, in an empty folder with its own temporary folder."""
    from PIL import EpsImagePlugin

    started, eps_parsed = [], []

    def popen(*args, **kwargs):
        started.append(args)
        raise FileNotFoundError("this test starts no programs")

    parse_eps = EpsImagePlugin.EpsImageFile._open

    def record_eps(self):
        eps_parsed.append(self)
        parse_eps(self)

    monkeypatch.setattr(subprocess, "Popen", popen)
    # Unknown again, so reading an EPS would start `gs --version` to look for Ghostscript.
    monkeypatch.setattr(EpsImagePlugin, "gs_binary", None)
    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", record_eps)
    folder = tmp_path / "work"
    (folder / "tmp").mkdir(parents=True)
    monkeypatch.chdir(folder)
    monkeypatch.setattr(tempfile, "tempdir", str(folder / "tmp"))
    yield SimpleNamespace(started=started, eps_parsed=eps_parsed, folder=folder)
    assert started == [], "an upload started a program"
    assert eps_parsed == [], "an upload reached Pillow's EPS plugin"
    assert sorted(folder.rglob("*")) == [folder / "tmp"], "an upload created a file"


def _eps(target: Path) -> bytes:
    """An EPS whose PostScript, if anything ran it, would write `target`."""
    return (
        "%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 28 28\n"
        f"/f ({target}) (w) file def f (written by an upload) writestring f closefile\n"
        "0 0 moveto 28 28 lineto stroke showpage\n%%EOF\n"
    ).encode()


def _dos_eps(target: Path) -> bytes:
    """The same PostScript behind the binary DOS EPS header, which Pillow also opens as EPS."""
    ps = _eps(target)
    return b"\xc5\xd0\xd3\xc6" + struct.pack("<6I", 30, len(ps), 0, 0, 0, 0) + b"\xff\xff" + ps


@pytest.mark.parametrize("make", [_eps, _dos_eps], ids=["eps", "dos-eps"])
def test_postscript_upload_is_refused_without_running_ghostscript(sandbox, make):
    # The browser only checks the file name, so an EPS renamed "digit.png" arrives here as these bytes.
    target = sandbox.folder / "written-by-upload.txt"
    with pytest.raises(dark.ImageError) as info:
        dark.image_from_upload(make(target), MNIST)
    assert str(info.value) == (
        "This file is PostScript (EPS), which is not accepted: upload a PNG, JPEG, GIF, BMP or WebP image."
    )
    assert not target.exists()


@pytest.mark.parametrize(
    "blob",
    [
        b"\x89PNG\r\n\x1a\n" + _eps(Path("written-by-upload.txt")),
        _png(_dark_digit_on_white())[:300],
    ],
    ids=["png-header-then-postscript", "truncated-png"],
)
def test_file_that_only_starts_like_a_png_is_refused(sandbox, blob):
    with pytest.raises(dark.ImageError, match="starts like a PNG image but is damaged or incomplete"):
        dark.image_from_upload(blob, MNIST)


def test_a_sniffing_mistake_still_cannot_reach_the_eps_reader(sandbox, monkeypatch):
    # Even if the byte check took this EPS for a PNG, Pillow is only allowed to try the PNG reader.
    monkeypatch.setattr(dark, "upload_format", lambda file_bytes: "PNG")
    with pytest.raises(dark.ImageError, match="starts like a PNG image"):
        dark.image_from_upload(_eps(sandbox.folder / "written-by-upload.txt"), MNIST)


# --- 16-bit uploads --------------------------------------------------------------------------


@pytest.mark.parametrize("dataset", [MNIST, CIFAR], ids=["mnist", "cifar10"])
def test_16_bit_grayscale_png_matches_its_8_bit_version(dataset):
    gray8 = np.asarray(_dark_digit_on_white().convert("L"))
    blob16 = _png(Image.fromarray(_to_16_bit(gray8)))
    assert Image.open(io.BytesIO(blob16)).mode.startswith("I")
    expected = dark.image_from_upload(_png(Image.fromarray(gray8)), dataset)
    assert torch.equal(dark.image_from_upload(blob16, dataset), expected)


@pytest.mark.parametrize("dataset", [MNIST, CIFAR], ids=["mnist", "cifar10"])
def test_16_bit_rgb_png_matches_its_8_bit_version(dataset):
    picture = _dark_digit_on_white() if dataset is MNIST else _colour_picture()
    rgb8 = np.asarray(picture)
    expected = dark.image_from_upload(_png(picture), dataset)
    out = dark.image_from_upload(_png_bytes(_to_16_bit(rgb8)), dataset)
    assert (out.float() - expected.float()).abs().max() <= 2


# --- drawing canvas --------------------------------------------------------------------------


def _canvas(draw: bool) -> np.ndarray:
    img = Image.new("RGBA", (280, 280), (0, 0, 0, 255))
    if draw:
        ImageDraw.Draw(img).line([(200, 40), (210, 150), (220, 250)], fill=(255, 255, 255, 255), width=18)
    return np.asarray(img)


def test_empty_canvas_asks_for_a_drawing():
    with pytest.raises(dark.ImageError, match="Draw a digit first"):
        dark.image_from_canvas(_canvas(False))


def test_drawn_stroke_becomes_a_centred_digit():
    out = dark.image_from_canvas(_canvas(True))
    assert out.shape == (1, 28, 28) and out.dtype == torch.uint8
    assert out.max() > 200
    cy, cx = _centre_of_mass(out)
    assert abs(cy - 13.5) <= 1 and abs(cx - 13.5) <= 1


# --- classical KD's soft term in its two decoupled parts ------------------------------------------------


def _teacher_batch(n=64, k=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, k, generator=g) * 4, torch.randint(0, k, (n,), generator=g)


@pytest.mark.parametrize("temperature", [1.0, 4.0, 20.0])
def test_dkd_parts_add_up_to_classical_kds_soft_term(temperature):
    from kdcore.losses import distillation_loss, kd_split

    logits, y = _teacher_batch()
    parts = dark.dkd_parts(logits, y, temperature)
    # Against a student that has learned nothing (equal logits): the loss's soft term at alpha = 1.
    soft = distillation_loss(torch.zeros_like(logits), logits, y, temperature, 1.0).soft
    assert parts.soft.mean().item() == pytest.approx(soft.item(), rel=1e-5)
    split = kd_split(torch.zeros_like(logits), logits, y, temperature)
    assert torch.allclose(parts.tckd, split.tckd * temperature**2)
    assert torch.allclose(parts.weight, 1 - torch.softmax(logits / temperature, 1)[torch.arange(len(y)), y])
    # With a real student the same identity holds against it.
    student = torch.randn(64, 10, generator=torch.Generator().manual_seed(5))
    with_student = dark.dkd_parts(logits, y, temperature, student)
    assert with_student.soft.mean().item() == pytest.approx(
        distillation_loss(student, logits, y, temperature, 1.0).soft.item(), rel=1e-5
    )


def test_dkd_parts_say_how_sure_the_teacher_is_and_how_it_spreads_the_rest():
    sure = torch.tensor([12.0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    spread = torch.tensor([12.0, 8.0, 0, 0, 0, 0, 0, 0, 0, 0])  # the same certainty, one clear runner-up
    a, b = dark.dkd_parts(sure, 0, 4.0), dark.dkd_parts(spread, 0, 4.0)
    assert a.tckd.ndim == 0 and float(a.target_prob) > float(b.target_prob)
    assert float(a.nckd) == pytest.approx(0.0, abs=1e-5)  # the rest is uniform: no dark knowledge
    assert float(b.nckd) > 0.5
    assert float(b.weight) == pytest.approx(1 - float(b.target_prob))
    # A hotter T lowers the teacher's certainty, so classical KD weights the dark knowledge up.
    assert float(dark.dkd_parts(spread, 0, 8.0).weight) > float(b.weight)


def test_dkd_curve_is_the_mean_of_the_parts_at_each_temperature():
    logits, _ = _teacher_batch()
    y = logits.argmax(1)  # a teacher that is right
    curve = dark.dkd_curve(logits, y, [1.0, 4.0])
    parts = dark.dkd_parts(logits, y, 4.0)
    assert curve["tckd"][1] == pytest.approx(parts.tckd.mean().item())
    assert curve["weighted_nckd"][1] == pytest.approx(parts.weighted_nckd.mean().item())
    assert curve["weight"][0] < curve["weight"][1]  # hotter: less sure of the target


def test_dkd_parts_refuse_targets_that_are_not_classes():
    logits, _ = _teacher_batch(n=3)
    with pytest.raises(ValueError, match="targets must hold one class index from 0 to 9"):
        dark.dkd_parts(logits, torch.tensor([0, 1, 10]), 4.0)
    with pytest.raises(ValueError, match="targets must hold"):
        dark.dkd_parts(logits, torch.tensor([0, 1]), 4.0)


def test_sample_indices_are_fixed_and_sorted():
    a = dark.sample_indices(10_000, 2000)
    assert len(a) == 2000 and torch.equal(a, a.sort().values) and torch.equal(a, dark.sample_indices(10_000, 2000))
    assert torch.equal(dark.sample_indices(50, 2000), torch.arange(50))
    with pytest.raises(ValueError, match="size must be"):
        dark.sample_indices(50, 0)


# --- watching the students learn on the probe images ----------------------------------------------------


def _probes(epochs=3, n_per_class=2, k=10):
    from kdcore import probes as kprobes

    g = torch.Generator().manual_seed(1)
    test_y = torch.arange(k).repeat(5)
    teacher = torch.randn(len(test_y), k, generator=g) * 3
    p = kprobes.Probes.start(kprobes.probe_indices(test_y, n_per_class), test_y, teacher)
    for e in range(epochs):
        # The distilled student moves towards the teacher each epoch, the scratch one stays noisy.
        p.record("distilled", teacher * (e + 1) / epochs + torch.randn(len(test_y), k, generator=g) * (epochs - e))
        p.record("scratch", torch.randn(len(test_y), k, generator=g) * 3)
    return p


def test_watch_scrubs_one_probe_image_through_the_epochs():
    from kdcore import probes as kprobes

    p = _probes()
    assert kprobes.roles(p) == ["scratch", "distilled"] and kprobes.common_epochs(p) == 3
    snap = kprobes.snapshot(p, 4, 2)
    assert set(snap) == {"teacher", "scratch", "distilled"}
    assert torch.allclose(snap["teacher"], p.teacher[4])
    assert torch.allclose(snap["distilled"], p.students["distilled"][1][4].float())
    for probs in snap.values():
        assert float(probs.sum()) == pytest.approx(1.0, abs=1e-2)
    assert kprobes.position_of(p, int(p.indices[4])) == 4
    assert kprobes.position_of(p, 10_000) is None and kprobes.position_of(p, None) is None


def test_watch_opens_on_the_probe_image_with_the_clearest_runner_up():
    from kdcore import probes as kprobes

    p = _probes()
    top2 = p.teacher.topk(2, dim=1).values[:, 1]  # each probe image's runner-up probability at T = 1
    position = kprobes.opening_position(p)
    right = p.teacher.argmax(dim=1) == p.labels  # images the teacher gets right
    assert bool(right[position]) and float(top2[position]) == pytest.approx(float(top2[right].max()))


def test_watch_curves_and_points_agree_with_the_recorded_epochs():
    from kdcore import probes as kprobes

    p = _probes()
    curves = kprobes.learning_curves(p)
    assert curves["distilled"]["kl"][-1] < curves["distilled"]["kl"][0]  # it learns the teacher
    points = kprobes.image_points(p, 3)
    assert len(points) == 2 * len(p.indices)
    distilled = [q for q in points if q.role == "distilled"]
    assert [q.position for q in distilled] == list(range(len(p.indices)))
    assert sum(q.kl for q in distilled) / len(distilled) == pytest.approx(curves["distilled"]["kl"][-1], rel=1e-5)
    assert sum(q.agrees for q in distilled) / len(distilled) == pytest.approx(curves["distilled"]["agreement"][-1])
    q = distilled[7]
    assert q.test_index == int(p.indices[7]) and q.label == int(p.labels[7])
    teacher_top = int(p.teacher[7].argmax())
    assert q.teacher_class_prob == pytest.approx(float(p.students["distilled"][2][7][teacher_top]))


def test_watch_plays_to_the_last_common_epoch_and_refuses_others():
    from kdcore import probes as kprobes

    p = _probes()
    p.students["scratch"].pop()  # a stopped run: scratch finished one epoch fewer
    assert kprobes.common_epochs(p) == 2
    assert kprobes.next_epoch(p, 1) == 2 and kprobes.next_epoch(p, 2) is None
    with pytest.raises(ValueError, match="epoch must be a whole number from 1 to 2, got 3"):
        kprobes.snapshot(p, 0, 3)
    with pytest.raises(ValueError, match="position must be a probe image's position from 0 to 19"):
        kprobes.snapshot(p, 20, 1)


def test_curves_over_t_are_drawn_at_every_value_the_t_slider_offers():
    from kdcore import limits

    low, high = limits.UI_TEMPERATURES
    assert dark.T_GRID[0] == low and dark.T_GRID[-1] == high
    steps = {round(b - a, 9) for a, b in zip(dark.T_GRID, dark.T_GRID[1:])}
    assert steps == {limits.UI_TEMPERATURE_STEP}
