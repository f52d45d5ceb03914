"""Dark knowledge: what a teacher's softened probabilities say about the wrong classes.

Pure functions on cached logits (fast enough to run on every temperature change): soft targets, their
entropy and class similarity, and classical KD's soft term split into decoupled KD's two parts (TCKD and
NCKD, from kdcore.losses); the choice of images to inspect; and the turning of an uploaded or hand-drawn
picture into a dataset-style image.
"""

from __future__ import annotations

import io
import math
import re
import warnings
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image, ImageOps

from . import limits, teachers
from .losses import kd_split, soft_targets
from .train import predict_logits

# The temperatures the app's T slider offers, where curves over T are drawn: 1 to 20 in steps of 0.5.
T_GRID = tuple(
    limits.UI_TEMPERATURES[0] + limits.UI_TEMPERATURE_STEP * i
    for i in range(round((limits.UI_TEMPERATURES[1] - limits.UI_TEMPERATURES[0]) / limits.UI_TEMPERATURE_STEP) + 1)
)
PICK_MODES = ("telling", "class", "random", "ambiguous", "mistakes")
# The only picture formats an upload may be, with their file name extensions. Each is decoded by
# Pillow's own code; formats that hand the bytes to another program (EPS to Ghostscript) stay out.
UPLOAD_FORMATS = {"PNG": ("png",), "JPEG": ("jpg", "jpeg"), "GIF": ("gif",), "BMP": ("bmp",), "WebP": ("webp",)}
UPLOAD_EXTENSIONS = tuple(ext for exts in UPLOAD_FORMATS.values() for ext in exts)
UPLOAD_FORMATS_TEXT = f"{', '.join(list(UPLOAD_FORMATS)[:-1])} or {list(UPLOAD_FORMATS)[-1]}"
MAX_UPLOAD_BYTES = 10 * 1024 * 1024
# Checked from the header before decoding: a small file can describe a huge image (a decompression bomb).
MAX_UPLOAD_PIXELS = 4096 * 4096
# MNIST digits were scaled into a 20x20 box and placed in a 28x28 frame by their centre of mass.
MNIST_BOX, MNIST_SIDE = 20, 28
# A pixel counts as ink when it is brighter than this share of the brightest ink.
INK_THRESHOLD = 0.2


class ImageError(ValueError):
    """An uploaded or drawn image cannot be used; the message says why and what to do."""

    user_facing = True


# --- soft targets and what they reveal -------------------------------------------------------


def soft_targets_at(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """softmax(logits / T) for one logit vector [K] or a batch [N, K]."""
    return soft_targets(logits.float(), temperature)


def entropy_bits(probs: torch.Tensor) -> torch.Tensor:
    """Shannon entropy in bits along the last dimension (0 = certain, log2 K = uniform)."""
    p = probs.clamp_min(1e-12)
    return -(probs * torch.log2(p)).sum(-1)


def entropy_curve(logits: torch.Tensor, temperatures: Sequence[float]) -> list[float]:
    """Mean entropy (bits) of the soft targets at each temperature."""
    batch = logits.float().reshape(-1, logits.shape[-1])
    return [entropy_bits(soft_targets(batch, t)).mean().item() for t in temperatures]


def class_similarity(logits: torch.Tensor, y: torch.Tensor, temperature: float) -> torch.Tensor:
    """[K, K]: row i is the mean soft target over images whose true class is i (rows of absent classes are 0)."""
    if logits.ndim != 2 or y.ndim != 1 or len(logits) != len(y):
        raise ValueError(f"logits must be [N, K] and y [N], got {tuple(logits.shape)} and {tuple(y.shape)}")
    k = logits.shape[1]
    probs = soft_targets_at(logits, temperature)
    sums = torch.zeros(k, k).index_add_(0, y.long(), probs)
    counts = torch.bincount(y.long(), minlength=k).clamp_min(1).unsqueeze(1)
    return sums / counts


def confusable_pairs(similarity: torch.Tensor, classes: Sequence[str], top: int = 5) -> list[tuple[str, str, float]]:
    """The `top` largest off-diagonal entries as (true class, class it resembles, mean soft probability)."""
    k = similarity.shape[0]
    if similarity.shape != (k, k) or len(classes) != k:
        raise ValueError(
            f"similarity must be [K, K] with K = len(classes) = {len(classes)}, got {tuple(similarity.shape)}"
        )
    off = similarity.clone().float()
    off.fill_diagonal_(-1.0)
    values, flat = off.flatten().sort(descending=True)
    n = min(int(top), k * (k - 1))
    return [(classes[int(i) // k], classes[int(i) % k], float(v)) for v, i in zip(values[:n], flat[:n])]


def class_phrase(name: str) -> str:
    """A class name with its article, as read aloud: "a 4", "an 8", "an airplane", "a T-shirt/top"."""
    m = re.fullmatch(r"\s*(\d+)\s*-\s*\w+\s*", name)  # torchvision's "4 - four" style
    word = m.group(1) if m else name.strip()
    if not (len(word) > 1 and (word[1].isupper() or word[1] == "-")):  # keep "T-shirt", "DVD"
        word = word[:1].lower() + word[1:]
    if word[:1].isdigit():
        # Spoken numbers: "an 8", "an 11", "an 18", "an 80"; otherwise "a".
        vowel = word.startswith("8") or (len(word) in (2, 5) and word[:2] in ("11", "18"))
    else:
        vowel = word[:1].lower() in "aeiou"
    return f"{'an' if vowel else 'a'} {word}"


def describe_pairs(pairs: Sequence[tuple[str, str, float]], temperature: float) -> list[str]:
    """One plain sentence per pair, e.g. "A 4 looks most like a 9 (mean soft probability 3.1 % at T = 4)".

    The pairs measure how alike the teacher finds two classes, not how often it errs, and say so.
    """
    seen: set[str] = set()
    out = []
    for true, other, p in pairs:
        verb = "looks next most like" if true in seen else "looks most like"
        seen.add(true)
        subject = class_phrase(true)
        out.append(
            f"{subject[0].upper()}{subject[1:]} {verb} {class_phrase(other)} "
            f"(mean soft probability {p * 100:.1f} % at T = {temperature:g})."
        )
    return out


def teacher_view(logits: torch.Tensor, temperature: float) -> dict:
    """What the page shows for one image: probabilities at T = 1 and at T, the top class and entropies."""
    z = logits.float().reshape(-1)
    p1, pt = soft_targets(z, 1.0), soft_targets(z, temperature)
    return {
        "p1": p1,
        "pT": pt,
        "pred": int(p1.argmax()),
        "confidence": float(p1.max()),
        "entropy_1": float(entropy_bits(p1)),
        "entropy_T": float(entropy_bits(pt)),
    }


def member_predictions(
    member_logits: Sequence[torch.Tensor], names: Sequence[str], classes: Sequence[str]
) -> list[tuple[str, str, float]]:
    """(member, its top class, its probability at T = 1) for each ensemble member."""
    out = []
    for name, z in zip(names, member_logits):
        p = soft_targets(z.float().reshape(-1), 1.0)
        out.append((name, classes[int(p.argmax())], float(p.max())))
    return out


# --- classical KD's soft term split in two (decoupled KD) ----------------------------------------


class DKDParts(NamedTuple):
    """Classical KD's soft term split as in decoupled KD (kdcore.losses), each part multiplied by T^2 as the
    loss weighs it: soft = tckd + weight * nckd.

    tckd: how sure the teacher is of the target class (a binary target / rest KL); nckd: how it spreads the
    rest over the other classes (the dark knowledge); weight: 1 - p_t, the teacher's probability of NOT the
    target class, by which classical KD scales nckd down. Scalars for one image, tensors [N] for a batch.
    """

    tckd: torch.Tensor
    nckd: torch.Tensor
    weight: torch.Tensor
    target_prob: torch.Tensor

    @property
    def weighted_nckd(self) -> torch.Tensor:
        return self.weight * self.nckd

    @property
    def soft(self) -> torch.Tensor:
        return self.tckd + self.weighted_nckd


def dkd_parts(
    teacher_logits: torch.Tensor, targets, temperature: float, student_logits: torch.Tensor | None = None
) -> DKDParts:
    """TCKD, NCKD and classical KD's weight on NCKD for one image ([K] logits, an int target) or a batch
    ([N, K], [N]) at T.

    Without `student_logits` the student is one that has learned nothing yet (every class equally likely), so
    the parts measure what the teacher has to teach: KL(teacher || uniform) = tckd + weight * nckd.
    """
    z = teacher_logits.float()
    single = z.ndim == 1
    z = z.reshape(-1, z.shape[-1])
    y = torch.as_tensor(targets, dtype=torch.long).reshape(-1)
    if len(y) != len(z) or not bool(((y >= 0) & (y < z.shape[1])).all()):
        raise ValueError(
            f"targets must hold one class index from 0 to {z.shape[1] - 1} per image ({len(z)}), got {targets!r}"
        )
    s = torch.zeros_like(z) if student_logits is None else student_logits.float().reshape(z.shape)
    split = kd_split(s, z, y, temperature)
    t2 = float(temperature) ** 2
    parts = DKDParts(split.tckd * t2, split.nckd * t2, 1.0 - split.teacher_target, split.teacher_target)
    return DKDParts(*(p[0] for p in parts)) if single else parts


def dkd_curve(teacher_logits: torch.Tensor, targets: torch.Tensor, temperatures: Sequence[float]) -> dict:
    """Means over the images of tckd, weighted nckd, nckd and weight (see `dkd_parts`) at each temperature,
    as lists keyed by those names."""
    curve = {"tckd": [], "weighted_nckd": [], "nckd": [], "weight": []}
    for t in temperatures:
        parts = dkd_parts(teacher_logits, targets, t)
        curve["tckd"].append(parts.tckd.mean().item())
        curve["weighted_nckd"].append(parts.weighted_nckd.mean().item())
        curve["nckd"].append(parts.nckd.mean().item())
        curve["weight"].append(parts.weight.mean().item())
    return curve


def sample_indices(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """A fixed random sample of `size` of range(n) (all of it when n <= size), sorted, the same on every call."""
    if int(size) < 1:
        raise ValueError(f"size must be a whole number >= 1, got {size!r}")
    if n <= size:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))[: int(size)].sort().values


# --- which images to look at -----------------------------------------------------------------


def pick_images(
    logits: torch.Tensor, y: torch.Tensor, how: str, *, cls: int | None = None, k: int = 12, seed: int = 0
) -> torch.Tensor:
    """Indices of up to k test images: the most telling (see `telling_images`), of class `cls`, at random, the
    most ambiguous, or the teacher's mistakes."""
    if how not in PICK_MODES:
        raise ValueError(f"how must be one of {', '.join(PICK_MODES)}, got {how!r}")
    if int(k) < 1:
        raise ValueError(f"k must be a whole number >= 1, got {k!r}")
    num_classes = logits.shape[1]
    gen = torch.Generator().manual_seed(int(seed))
    if how == "telling":
        return telling_images(logits, y, k)
    if how == "class":
        if cls is None or not 0 <= int(cls) < num_classes:
            raise ValueError(f"cls must be a class index from 0 to {num_classes - 1} when how='class', got {cls!r}")
        idx = torch.nonzero(y == int(cls)).flatten()
        return idx[torch.randperm(len(idx), generator=gen)[:k]]
    if how == "random":
        return torch.randperm(len(y), generator=gen)[:k]
    probs = soft_targets_at(logits, 1.0)
    if how == "ambiguous":
        return entropy_bits(probs).argsort(descending=True)[:k]
    conf, pred = probs.max(1)
    wrong = torch.nonzero(pred != y).flatten()
    return wrong[conf[wrong].argsort(descending=True)][:k]


def telling_images(logits: torch.Tensor, y: torch.Tensor, k: int = 12) -> torch.Tensor:
    """Up to k images the teacher gets right while giving a clear runner-up, one class at a time.

    An image the teacher is sure of shows nothing at any T; one whose second class has a real share of the
    probability (at T = 1) shows what dark knowledge is. Classes take turns, each giving its image with the
    largest runner-up share first, so the pick is not ten versions of one confusion.
    """
    probs = soft_targets_at(logits, 1.0)
    top2 = probs.topk(2, dim=1)
    right = torch.nonzero(top2.indices[:, 0] == y).flatten()
    runner_up = top2.values[right, 1]
    per_class = [
        [int(i) for i in right[y[right] == c][runner_up[y[right] == c].argsort(descending=True)]]
        for c in range(logits.shape[1])
    ]
    turns = max((len(ids) for ids in per_class), default=0)
    order = []
    for turn in range(turns):
        batch = [ids[turn] for ids in per_class if turn < len(ids)]
        order += sorted(batch, key=lambda i: -float(top2.values[i, 1]))
    return torch.tensor(order[: int(k)], dtype=torch.long)


# --- the teacher ensemble on disk and on new images ---------------------------------------------


def predict_image(
    models: Sequence[torch.nn.Module], image: torch.Tensor, mean, std, combine: str = "prob"
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Each model's logits [K] for one uint8 image [C, H, W], and the combined ensemble logits [K]."""
    x = image.unsqueeze(0)
    member = [predict_logits(m, x, mean, std)[0] for m in models]
    return member, teachers.combine_logits(member, combine)


def enlarge(image: torch.Tensor, size: int) -> np.ndarray:
    """A uint8 [C, H, W] image as an HxW or HxWx3 array scaled up with crisp square pixels, for display."""
    arr = image.permute(1, 2, 0).numpy()
    pil = Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)
    return np.asarray(pil.resize((size, size), Image.NEAREST))


# --- uploaded and drawn images ---------------------------------------------------------------


def _fit_and_centre(ink: np.ndarray, box: int, side: int, by_mass: bool) -> np.ndarray:
    """Crop float ink [H, W] to its bounding box, scale it into box x box keeping aspect, place it in side x side."""
    mask = ink > INK_THRESHOLD * ink.max()
    rows, cols = np.nonzero(mask)
    crop = ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    h, w = crop.shape
    scale = box / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    small = Image.fromarray((crop / crop.max() * 255).astype(np.uint8)).resize((nw, nh), Image.LANCZOS)
    small = np.asarray(small, dtype=np.float64)
    if by_mass and small.sum() > 0:
        yy, xx = np.mgrid[:nh, :nw]
        cy, cx = (small * yy).sum() / small.sum(), (small * xx).sum() / small.sum()
    else:
        cy, cx = (nh - 1) / 2, (nw - 1) / 2
    # Keep the whole shape inside the frame even when its mass sits far off its box centre.
    top = int(np.clip(round((side - 1) / 2 - cy), 0, side - nh))
    left = int(np.clip(round((side - 1) / 2 - cx), 0, side - nw))
    out = np.zeros((side, side), dtype=np.float64)
    out[top : top + nh, left : left + nw] = small
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _grayscale_style(gray: np.ndarray, dataset_name: str) -> torch.Tensor:
    """Light-on-dark ink from a grayscale picture, framed the way the 1-channel dataset was made."""
    g = gray.astype(np.float64)
    border = np.concatenate([g[0], g[-1], g[:, 0], g[:, -1]])
    if np.median(border) > 127:  # dark ink on light paper: the datasets store light ink on black
        g = 255.0 - g
        border = 255.0 - border
    ink = np.clip(g - np.median(border), 0, None)  # the paper's own shade is not ink
    if ink.max() < 16:
        raise ImageError(
            "The image looks blank: no shape stands out from the background. "
            "Upload a picture with a clear dark-on-light or light-on-dark shape."
        )
    if dataset_name.startswith("fashion"):
        # Fashion-MNIST scaled each product to fill the frame and centred it geometrically.
        out = _fit_and_centre(ink, MNIST_SIDE, MNIST_SIDE, by_mass=False)
    else:
        out = _fit_and_centre(ink, MNIST_BOX, MNIST_SIDE, by_mass=True)
    return torch.from_numpy(out).unsqueeze(0)


# Formats people upload by mistake, named in the refusal so they know what to change.
_REFUSED_SIGNATURES = (
    (b"%!PS", "PostScript (EPS)"),
    (b"\xc5\xd0\xd3\xc6", "PostScript (EPS)"),
    (b"%PDF", "a PDF document"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
)


def upload_format(file_bytes: bytes) -> str | None:
    """The UPLOAD_FORMATS name that the file's first bytes (its magic number) announce, or None."""
    head = bytes(file_bytes[:12])
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head.startswith(b"BM"):
        return "BMP"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    return None


def _refuse_format(file_bytes: bytes) -> ImageError:
    head = bytes(file_bytes[:32])
    for signature, name in _REFUSED_SIGNATURES:
        if head.startswith(signature):
            return ImageError(f"This file is {name}, which is not accepted: upload a {UPLOAD_FORMATS_TEXT} image.")
    if head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"mif1", b"msf1", b"avif", b"avis"):
        return ImageError(
            "This file is a HEIC or AVIF photo, which is not accepted: save it as JPEG and upload it again."
        )
    if head.lstrip().startswith((b"<svg", b"<?xml")):
        return ImageError(f"This file is an SVG drawing, which is not accepted: upload a {UPLOAD_FORMATS_TEXT} image.")
    return ImageError(
        f"Could not read the image: the file is not a {UPLOAD_FORMATS_TEXT} image. "
        "Save it in one of these formats and upload it again."
    )


def _open_upload(file_bytes: bytes) -> Image.Image:
    """Decode the first frame of an accepted picture, refusing any other format before Pillow reads it."""
    if len(file_bytes) > MAX_UPLOAD_BYTES:
        raise ImageError(
            f"The file is {len(file_bytes) / 1e6:.1f} MB; the limit is {MAX_UPLOAD_BYTES // 2**20} MB. "
            f"Upload a smaller {UPLOAD_FORMATS_TEXT} image (a screenshot, or a photo saved at a lower size)."
        )
    name = upload_format(file_bytes)
    if name is None:
        raise _refuse_format(file_bytes)
    damaged = ImageError(
        f"Could not read the image: the file starts like a {name} image but is damaged or incomplete. "
        f"Save it again as {UPLOAD_FORMATS_TEXT} and upload it again."
    )
    too_big = (
        f"the limit is {MAX_UPLOAD_PIXELS / 1e6:.1f} megapixels (for example {math.isqrt(MAX_UPLOAD_PIXELS)} x "
        f"{math.isqrt(MAX_UPLOAD_PIXELS)}). Scale it down or crop it, then upload it again."
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            # Only the announced format's decoder may run, so no sniffing mistake can reach another plugin.
            img = Image.open(io.BytesIO(file_bytes), formats=[name.upper()])
            w, h = img.size
            if w * h > MAX_UPLOAD_PIXELS:
                raise ImageError(f"The image is {w} x {h} pixels ({w * h / 1e6:.1f} megapixels); {too_big}")
            img.load()  # an animation's first frame only: the file opens positioned on it
            return ImageOps.exif_transpose(img)  # phone photos store their rotation separately
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"The image has too many pixels; {too_big}") from None
    except Exception:
        raise damaged from None


def _eight_bit(img: Image.Image) -> Image.Image:
    """16-bit grayscale (0..65535) scaled to 8-bit "L"; Pillow's own conversion clips it at 255, so it looks blank.

    Among the accepted formats only 16-bit PNGs open in these modes ("I" in older Pillow versions). Pillow
    already reads 16-bit colour PNGs as 8-bit RGB(A) by keeping each sample's high byte.
    """
    if img.mode not in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        return img
    samples = np.asarray(img, dtype=np.float64)
    return Image.fromarray(np.clip(np.round(samples * (255 / 65535)), 0, 255).astype(np.uint8), "L")


def image_from_upload(file_bytes: bytes, dataset) -> torch.Tensor:
    """A PNG, JPEG, GIF, BMP or WebP file as a uint8 [C, H, W] tensor in the dataset's style; ImageError if unusable."""
    img = _eight_bit(_open_upload(file_bytes))
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Transparent areas are treated as white paper.
        rgba = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    channels, height, width = tuple(dataset.image_shape)
    if channels == 1:
        return _grayscale_style(np.asarray(img.convert("L")), dataset.name)
    rgb = img.convert("RGB")
    side = min(rgb.size)
    left, top = (rgb.width - side) // 2, (rgb.height - side) // 2
    rgb = rgb.crop((left, top, left + side, top + side)).resize((width, height), Image.LANCZOS)
    return torch.from_numpy(np.asarray(rgb).copy()).permute(2, 0, 1).contiguous()


def image_from_canvas(rgba: np.ndarray, dataset_name: str = "mnist") -> torch.Tensor:
    """A canvas drawing (light strokes on a dark or transparent background, HxWx4 uint8) as a [1, 28, 28] image."""
    arr = np.asarray(rgba)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"rgba must be an H x W x 4 (or x 3) array, got shape {arr.shape}")
    rgb = arr[:, :, :3].astype(np.float64)
    alpha = arr[:, :, 3] / 255.0 if arr.shape[2] == 4 else 1.0
    ink = rgb.mean(axis=2) * alpha
    if ink.max() < 16:
        raise ImageError("Draw a digit first: the canvas is empty.")
    if dataset_name.startswith("fashion"):
        out = _fit_and_centre(ink, MNIST_SIDE, MNIST_SIDE, by_mass=False)
    else:
        out = _fit_and_centre(ink, MNIST_BOX, MNIST_SIDE, by_mass=True)
    return torch.from_numpy(out).unsqueeze(0)
