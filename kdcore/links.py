"""Shareable links: a RunConfig to and from URL query parameters, with bad values clamped or dropped and said so.

Instructor links add three parameters on top of the configuration: `lesson=N` opens lesson N (its number or
its id), `hide=alpha,teachers` hides those sidebar controls and `lock=1` shows the preset read-only.
`view_from_params` reads them into a LinkView, `instructor_link` writes them, and `qr_svg` draws a link as a
QR code for the projector.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import segno

from . import assistant as kassistant
from . import data as kdata
from . import limits, models, teachers
from .experiments import AUGMENT_METHODS, RunConfig, default_config
from .limits import UI_EPOCHS as EPOCH_RANGE
from .limits import UI_FRACTIONS as FRACTIONS
from .limits import UI_SEEDS as SEED_RANGE
from .limits import UI_TEMPERATURES as TEMPERATURE_RANGE

# A method's own parameters appear in a link only with that method (and augment only where it differs from the
# dataset's preset), so a Hinton KD link reads as it did before methods existed.
METHOD_PARAMS = ("method", "alpha_tc", "beta_nc", "assistant", "generations", "augment")
PARAMS = ("dataset", "teachers", "student", "T", "alpha", "epochs", "fraction", "seed", *METHOD_PARAMS)
# The sidebar's controls, by the RunConfig field each sets; `hide` names them (T also names temperature).
RUN_CONTROLS = ("dataset", "teachers", "student", "temperature", "alpha", "epochs", "fraction", "seed")
CONTROLS = (*RUN_CONTROLS, *METHOD_PARAMS)
CONTROL_ALIASES = {"T": "temperature"}
VIEW_PARAMS = ("lesson", "hide", "lock")
LOCK_VALUES = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


def config_to_params(cfg: RunConfig) -> dict[str, str]:
    params = {
        "dataset": cfg.dataset,
        "teachers": ",".join(cfg.teachers),
        "student": cfg.student,
        "T": f"{cfg.temperature:g}",
        "alpha": f"{cfg.alpha:g}",
        "epochs": str(cfg.epochs),
        "fraction": f"{cfg.fraction:g}",
        "seed": str(cfg.seed),
    }
    if cfg.method != "kd":
        params["method"] = cfg.method
    if cfg.method == "dkd":
        params["alpha_tc"] = f"{cfg.alpha_tc:g}"
        if cfg.beta_nc is not None:  # None: the dataset's measured default, whatever it becomes
            params["beta_nc"] = f"{cfg.beta_nc:g}"
    if cfg.method == "ta" and cfg.assistant is not None:
        params["assistant"] = cfg.assistant
    if cfg.method == "self":
        params["generations"] = str(cfg.generations)
    if cfg.augment != default_config(cfg.dataset).augment:
        params["augment"] = "1" if cfg.augment else "0"
    return params


def _method_values(params: Mapping[str, str], values: dict, base: RunConfig, warnings: list[str]) -> None:
    """The method and its own settings from a link into `values`, each bad one dropped with a warning."""
    method = _choice(params, "method", limits.METHODS, "kd", warnings, "kd (Hinton KD)")
    values["method"] = method
    for key in ("alpha_tc", "beta_nc"):
        if key in params:
            value = _number(params[key], key, warnings)
            if value is not None:
                values[key] = _clamp(value, *limits.UI_DKD_WEIGHTS, key, params[key], warnings)
    if "generations" in params:
        text = params["generations"]
        value = _number(text, "generations", warnings)
        if value is not None and value != int(value):
            warnings.append(f"The link's generations={_quoted(text)} is not a whole number; it was ignored.")
        elif value is not None:
            values["generations"] = int(_clamp(value, *limits.GENERATIONS, "generations", text, warnings))
    student = values.get("student", base.student)
    if "assistant" in params:
        allowed = kassistant.choices(student, base.dataset)
        if params["assistant"] in allowed:
            values["assistant"] = params["assistant"]
        else:
            warnings.append(
                f"The link's assistant={_quoted(params['assistant'])} is not a model larger than the student "
                f"{student} (choose from {', '.join(allowed) or 'none'}); the next size up is used instead."
            )
    if method == "ta" and kassistant.default_assistant(student, base.dataset) is None and "assistant" not in values:
        warnings.append(
            f"The link asks for a teacher assistant, but no model is larger than the student {student}; "
            "kd (Hinton KD) is used instead."
        )
        values["method"] = "kd"
    if "augment" in params:
        augment = LOCK_VALUES.get(params["augment"].strip().lower())
        if augment is None:
            warnings.append(f"The link's augment={_quoted(params['augment'])} is neither 1 nor 0; it was ignored.")
        elif augment and base.dataset not in kdata.VIEWS:
            warnings.append(
                f"The link asks for consistent augmentation, which only {', '.join(kdata.VIEWS)} offers; "
                f"it is off for {base.dataset}."
            )
        else:
            values["augment"] = augment
    if values.get("augment", base.augment) and values["method"] not in AUGMENT_METHODS:
        if params.get("augment"):  # the link asked for it; a preset that has it just drops it quietly
            warnings.append(
                f"The link asks for consistent augmentation, which works with {', '.join(AUGMENT_METHODS)} only; "
                f"it is off for method {values['method']}."
            )
        values["augment"] = False


def _number(text: str, name: str, warnings: list[str]) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value):
        warnings.append(f"The link's {name}={_quoted(text)} is not a number; it was ignored.")
        return None
    return value


def _clamp(value: float, low: float, high: float, name: str, text: str, warnings: list[str]) -> float:
    clamped = min(max(value, low), high)
    if clamped != value:
        warnings.append(
            f"The link's {name}={_quoted(text)} is outside {low:g} to {high:g}; {clamped:g} is used instead."
        )
    return clamped


def _choice(params: Mapping[str, str], key: str, allowed, fallback: str, warnings: list[str], label: str = "") -> str:
    """The link's value of `key` if it is one of `allowed`, else `fallback`, with a warning naming the choices."""
    value = params.get(key, fallback)
    if value in allowed:
        return value
    warnings.append(
        f"The link's {key}={_quoted(value)} is unknown (choose from {', '.join(allowed)}); "
        f"{label or fallback} is used instead."
    )
    return fallback


def config_from_params(params: Mapping[str, str]) -> tuple[RunConfig, list[str]]:
    """The configuration a link describes, on top of its dataset's preset, and a warning per value changed."""
    warnings: list[str] = []
    dataset = _choice(params, "dataset", kdata.DATASETS, "mnist-sample", warnings)
    base = default_config(dataset)
    values: dict = {}
    if "teachers" in params:
        try:
            values["teachers"] = tuple(m.name for m in teachers.parse_members(params["teachers"]))
        except ValueError as exc:
            warnings.append(f"The link's teachers were ignored: {exc}")
    if "student" in params:
        students = [s.name for s in models.available("student")]
        values["student"] = _choice(params, "student", students, base.student, warnings)
    for key, field_, (low, high), whole in (
        ("T", "temperature", TEMPERATURE_RANGE, False),
        ("alpha", "alpha", (0.0, 1.0), False),
        ("epochs", "epochs", EPOCH_RANGE, True),
        ("seed", "seed", SEED_RANGE, True),
    ):
        if key in params:
            value = _number(params[key], key, warnings)
            if value is not None and whole and value != int(value):
                warnings.append(f"The link's {key}={_quoted(params[key])} is not a whole number; it was ignored.")
            elif value is not None:
                value = _clamp(value, low, high, key, params[key], warnings)
                values[field_] = int(value) if whole else float(value)
    if "fraction" in params:
        value = _number(params["fraction"], "fraction", warnings)
        if value is not None:
            nearest = min(FRACTIONS, key=lambda f: abs(f - value))
            if not math.isclose(nearest, value):
                warnings.append(
                    f"The link's fraction={_quoted(params['fraction'])} is not one of the offered fractions; "
                    f"{nearest:g} is used instead."
                )
            values["fraction"] = nearest
    _method_values(params, values, base, warnings)
    unknown = sorted(set(params) - set(PARAMS) - set(VIEW_PARAMS) - {"page"})
    if unknown:
        warnings.append(f"The link's unknown parameters {', '.join(map(_quoted, unknown))} were ignored.")
    return RunConfig(**{**base.to_dict(), "teachers": base.teachers, **values}), warnings


# --------------------------------------------------------------------------- instructor links


def _quoted(text: str) -> str:
    """A value from a link, quoted for a warning and cut to a readable length."""
    return limits.shorten(str(text))


@dataclass(frozen=True)
class LinkView:
    """How a link asks the app to look: which lesson to open, which sidebar controls to hide, read-only or not."""

    lesson: int | None = None
    hidden: tuple[str, ...] = ()  # names from CONTROLS, in that order
    locked: bool = False

    def shows(self, control: str) -> bool:
        return CONTROL_ALIASES.get(control, control) not in self.hidden


def _lesson_numbers(lessons) -> dict[str, int]:
    """Every way a link may name a lesson (its number, or its id) -> its number."""
    if lessons is None:
        from .lessons import load_lessons  # here, not at the top: kdcore.lessons imports this module

        lessons = load_lessons()
    names: dict[str, int] = {}
    for lesson in lessons:
        number = lesson if isinstance(lesson, int) else lesson.number
        names[str(number)] = number
        if not isinstance(lesson, int):
            names[lesson.id] = number
    return names


def view_from_params(params: Mapping[str, str], lessons: Iterable | None = None) -> tuple[LinkView, list[str]]:
    """The LinkView a link asks for and a warning per value dropped.

    `lessons` are the lessons (or their numbers) a link may open; None loads the default lessons file.
    """
    warnings: list[str] = []
    lesson = None
    if params.get("lesson", "").strip():
        text = params["lesson"].strip()
        try:
            names = _lesson_numbers(lessons)
        except ValueError as exc:  # a broken lessons file (LessonError) must not break every page that reads links
            warnings.append(f"The link's lesson={_quoted(text)} was ignored: {exc}")
        else:
            lesson = names.get(text, names.get(text.lstrip("0")))  # "?lesson=02" is lesson 2
            if lesson is None:
                offered = ", ".join(map(str, sorted(set(names.values())))) or "none"
                warnings.append(
                    f"The link's lesson={_quoted(text)} is not a lesson here (lessons: {offered}); the lesson list "
                    "is shown instead."
                )
    hidden: list[str] = []
    for item in params.get("hide", "").split(","):
        name = CONTROL_ALIASES.get(item.strip(), item.strip())
        if not name:
            continue
        if name in CONTROLS:
            hidden.append(name)
        else:
            warnings.append(
                f"The link asks to hide {_quoted(item.strip())}, which is not a sidebar control "
                f"(choose from {', '.join(CONTROLS)}); it was ignored."
            )
    locked = False
    if "lock" in params:
        value = LOCK_VALUES.get(params["lock"].strip().lower())
        if value is None:
            warnings.append(
                f"The link's lock={_quoted(params['lock'])} is neither 1 nor 0; the controls stay editable."
            )
        else:
            locked = value
    order = {name: i for i, name in enumerate(CONTROLS)}
    return LinkView(lesson, tuple(sorted(set(hidden), key=order.__getitem__)), locked), warnings


def view_to_params(view: LinkView) -> dict[str, str]:
    """The query parameters of a LinkView (none for what it leaves at the default)."""
    params = {}
    if view.lesson is not None:
        params["lesson"] = str(view.lesson)
    if view.hidden:
        params["hide"] = ",".join(view.hidden)
    if view.locked:
        params["lock"] = "1"
    return params


def instructor_link(
    base_url: str,
    lesson: int | None = None,
    hide: Sequence[str] = (),
    lock: bool = False,
    config: RunConfig | None = None,
) -> str:
    """`base_url` (e.g. http://host:8501/Lessons) with the lesson, hidden controls, lock and configuration in its
    query; the parameters it sets replace any of the same name already there."""
    if lesson is not None and (isinstance(lesson, bool) or not isinstance(lesson, int) or lesson < 1):
        raise ValueError(f"lesson must be a lesson number from 1 up or None, got {lesson!r}")
    if isinstance(hide, str):
        hide = [h for h in hide.split(",") if h.strip()]
    names = [CONTROL_ALIASES.get(h.strip(), h.strip()) for h in hide]
    unknown = [h for h in names if h not in CONTROLS]
    if unknown:
        raise ValueError(f"hide must name sidebar controls from: {', '.join(CONTROLS)}; got {', '.join(unknown)}")
    order = {name: i for i, name in enumerate(CONTROLS)}
    view = LinkView(lesson, tuple(sorted(set(names), key=order.__getitem__)), bool(lock))
    ours = {**view_to_params(view), **(config_to_params(config) if config is not None else {})}
    parts = urlsplit(base_url)
    kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in ours and k not in VIEW_PARAMS]
    query = urlencode(kept + list(ours.items()), safe=",@")
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def qr_svg(url: str, scale: int = 8) -> str:
    """The url as a QR code, an inline SVG (dark modules on white, with the standard quiet zone) for the projector."""
    if not isinstance(url, str) or not url:
        raise ValueError(f"url must be a non-empty text, got {url!r}")
    try:
        code = segno.make(url, error="m", micro=False)
    except segno.DataOverflowError:
        raise ValueError(
            f"The link is too long for a QR code ({len(url)} characters); hide fewer controls or leave out the "
            "configuration."
        ) from None
    return code.svg_inline(scale=scale, dark="#000", light="#fff")
