"""Every plotly figure the pages draw, one function per chart, named for what it draws: training curves and the
per-class gain (Distill), soft targets, entropy and class similarity (Dark knowledge), the accuracy-latency map
(Compare), teachers per class, the four studies (Experiments), saved runs' curves (History), a lesson's chart and
the class board. Drawing only: every number comes from kdcore's results."""

from __future__ import annotations

import math
from collections.abc import Sequence

import plotly.graph_objects as go
import torch

import ui
from kdcore import classboard, describe, events, lessons, methods, report, studies
from kdcore.experiments import ROLES, RunResult

CHART_HEIGHT = 430
UP, DOWN = "#009E73", "#D55E00"  # Okabe-Ito green and vermillion: better / worse than scratch, on every page
NEUTRAL, PENDING = "#F4F4F4", "#E2E2E2"
ASSISTANT_COLOR = "#56B4E9"  # Okabe-Ito sky blue: the teacher assistant's line, apart from the four roles
SUBTITLE_FONT = dict(size=15, color="#555")
# The title of each chart a lesson can name (lessons.CHARTS), so a page and its tests agree on what is drawn.
TITLES = {
    "soft-targets": "The teacher's probabilities for this image",
    "gain-vs-temperature": "KD gain at each temperature T",
    "gain-vs-alpha": "KD gain at each weight α",
    "sweep-heatmap": "KD gain for each T and α",
    "gain-vs-student": "KD gain for each student size",
    "gain-vs-fraction": "KD gain at each share of the training data",
    "missing-class": "The class the students never saw",
    "students": "Test accuracy of the two students",
    "learning-curves": "Test accuracy while the students trained",
}
BOARD_TITLES = {
    axis: f"KD gain against {label[0].lower()}{label[1:]}" for axis, label in classboard.AXIS_LABELS.items()
}
MISSING_ROWS = {
    "teacher": ("Teacher (saw it)", ui.COLORS["ensemble"], ""),
    "scratch": ("Scratch student", ui.COLORS["scratch"], ""),
    "distilled": ("Distilled student", ui.COLORS["distilled"], ""),
    "distilled + bias fix": ("Distilled + bias fix", ui.COLORS["distilled"], "/"),
}
# The study's legend has room for the full role names; a lesson's bars carry the short ones on the axis.
MISSING_LEGEND = {
    "teacher": "Teacher ensemble (saw it)",
    "scratch": ui.ROLE_LABELS["scratch"],
    "distilled": ui.ROLE_LABELS["distilled"],
    "distilled + bias fix": "Distilled + bias fix",
}


def _titled(fig: go.Figure, title: str, subtitle: str = "", height: int = CHART_HEIGHT) -> go.Figure:
    ui.readable(fig, height)
    fig.update_layout(title=dict(text=title, subtitle=dict(text=subtitle, font=SUBTITLE_FONT)), margin=dict(t=90))
    return fig


def _bottom_legend(fig: go.Figure, y: float = -0.2) -> None:
    fig.update_layout(legend=dict(orientation="h", yanchor="top", y=y, xanchor="left", x=0))


def _accuracy_floor(values: Sequence[float], margin: float = 1.0) -> float:
    """The accuracy axis starts a 5-point step below the lowest value, so it settles instead of following each point."""
    return max(0.0, 5 * math.floor((min(values) - margin) / 5)) if values else 0.0


def _accuracy_axis(fig: go.Figure, values: Sequence[float]) -> None:
    fig.update_yaxes(title_text="Test accuracy (%)", range=[_accuracy_floor(values), 100.5])


def _teacher_line(fig: go.Figure, teacher_acc: float | None) -> None:
    if teacher_acc is not None:
        fig.add_hline(
            y=100 * teacher_acc,
            line=dict(color=ui.COLORS["ensemble"], dash="dot", width=3),
            annotation_text=f"teacher ensemble {100 * teacher_acc:.1f} %",
            annotation_position="bottom right",
            annotation_font=dict(color=ui.COLORS["ensemble"]),
        )


def _gain_subtitle(scratch_acc: float | None = None) -> str:
    scratch = "scratch" if scratch_acc is None else f"scratch ({100 * scratch_acc:.1f} %)"
    return f"distilled − {scratch} test accuracy · above 0: the teacher helped"


def _pct(values) -> list[float | None]:
    return [None if v is None else 100 * v for v in values]


def _gain_axis(fig: go.Figure, points: list[float]) -> None:
    """A gain axis with 0 (the scratch student) always in view and marked, symmetric so up and down read alike."""
    span = max([abs(v) for v in points] + [1.0]) * 1.35
    fig.update_yaxes(
        title_text="KD gain (points)", range=[-span, span], zeroline=True, zerolinewidth=2, zerolinecolor="#444"
    )


def _gain_trace(fig: go.Figure, x: list, gains: list[float | None], name: str, hover: str, custom=None) -> None:
    y = _pct(gains)
    fig.add_scatter(
        x=x,
        y=y,
        name=name,
        mode="lines+markers+text",
        line=dict(color="#888", width=2),
        marker=dict(size=15, color=[UP if v is not None and v >= 0 else DOWN for v in y]),
        text=["" if v is None else f"{v:+.1f}" for v in y],
        textposition="top center",
        textfont=dict(size=16, color="#333"),
        cliponaxis=False,
        customdata=custom,
        hovertemplate=hover,
    )


# --------------------------------------------------------------------------- lesson charts


def soft_targets(r: lessons.LookResult) -> go.Figure:
    t = r.config.temperature
    fig = go.Figure()
    for temperature, colour in ((1.0, ui.COLORS["teacher"]), (t, ui.COLORS["ensemble"])):
        y = _pct(r.probabilities(temperature))
        fig.add_bar(
            x=list(r.classes),
            y=y,
            name=f"T = {temperature:g}",
            marker_color=colour,
            text=[f"{v:.0f}" if v >= 0.5 else "" for v in y],
            textposition="outside",
            cliponaxis=False,
            hovertemplate="class %{x}: %{y:.2f} %<extra>" + f"T = {temperature:g}</extra>",
        )
    _titled(fig, TITLES["soft-targets"], f"true class {r.classes[r.label]} · T = 1 against T = {t:g}")
    _bottom_legend(fig)
    fig.update_layout(barmode="group")
    fig.update_xaxes(title_text="Class", type="category")
    fig.update_yaxes(title_text="Probability (%)", range=[0, 110])
    return fig


def sweep_gain(r: studies.SweepResult, axis: str) -> go.Figure:
    """KD gain against T (axis "temperature") or α, one line per value of the other setting."""
    symbol, other_symbol = ("T", "α") if axis == "temperature" else ("α", "T")
    values, others = (r.temperatures, r.alphas) if axis == "temperature" else (r.alphas, r.temperatures)
    gain = r.gain
    fig, shown = go.Figure(), []
    for k, other in enumerate(others):
        line = [row[k] for row in gain] if axis == "temperature" else gain[k]
        shown += [100 * g for g in line if g is not None]
        _gain_trace(
            fig,
            [f"{symbol} = {v:g}" for v in values],
            line,
            f"{other_symbol} = {other:g}",
            "%{x}: %{y:+.2f} points<extra>" + f"{other_symbol} = {other:g}</extra>",
        )
    _titled(fig, TITLES[f"gain-vs-{axis}"], _gain_subtitle(r.scratch_acc))
    fig.update_layout(showlegend=len(others) > 1)
    _bottom_legend(fig)
    fig.update_xaxes(title_text="temperature T" if axis == "temperature" else "weight α of the teacher")
    _gain_axis(fig, shown)
    return fig


def sweep_heatmap(r: studies.SweepResult) -> go.Figure:
    z = [_pct(row) for row in r.gain]
    span = max([abs(v) for row in z for v in row if v is not None] + [0.5])
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=[f"{a:g}" for a in r.alphas],
            y=[f"{t:g}" for t in r.temperatures],
            text=[["" if v is None else f"{v:+.1f}" for v in row] for row in z],
            texttemplate="%{text}",
            textfont=dict(size=17),
            colorscale=[[0, DOWN], [0.5, "#F4F4F4"], [1, UP]],
            zmin=-span,
            zmax=span,
            xgap=4,
            ygap=4,
            colorbar=dict(title=dict(text="KD gain (points)", side="right")),
            hovertemplate="T = %{y}, α = %{x}: %{z:+.2f} points<extra></extra>",
        )
    )
    _titled(fig, TITLES["sweep-heatmap"], _gain_subtitle(), height=max(CHART_HEIGHT, 170 + 75 * len(r.temperatures)))
    fig.update_xaxes(title_text="α (weight of the teacher)", type="category", showgrid=False)
    fig.update_yaxes(title_text="temperature T", type="category", autorange="reversed", showgrid=False)
    return fig


def _points_chart(chart: str, labels: list[str], points, hover: str) -> go.Figure:
    fig = go.Figure()
    custom = [[_acc(p.scratch_acc), _acc(p.distilled_acc)] for p in points]
    _gain_trace(fig, labels, [p.gain for p in points], "KD gain", hover, custom)
    _titled(fig, TITLES[chart], _gain_subtitle())
    fig.update_layout(showlegend=False)
    fig.update_xaxes(type="category")
    _gain_axis(fig, [100 * p.gain for p in points if p.gain is not None])
    return fig


def _acc(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f} %"


def gain_vs_student(r: studies.CapacityResult) -> go.Figure:
    labels = [f"{p.student}<br>{p.params:,} parameters" for p in r.points]
    hover = "%{x}: %{y:+.2f} points<br>scratch %{customdata[0]}, distilled %{customdata[1]}<extra></extra>"
    fig = _points_chart("gain-vs-student", labels, r.points, hover)
    fig.update_xaxes(title_text="Student (smallest first)")
    return fig


def gain_vs_fraction(r: studies.FractionResult) -> go.Figure:
    labels = [f"{p.fraction * 100:g} %<br>{p.train_size:,} images" for p in r.points]
    hover = "%{x}: %{y:+.2f} points<br>scratch %{customdata[0]}, distilled %{customdata[1]}<extra></extra>"
    fig = _points_chart("gain-vs-fraction", labels, r.points, hover)
    fig.update_xaxes(title_text="Share of the training images")
    return fig


def missing_class(r: studies.MissingClassResult) -> go.Figure:
    fig = go.Figure()
    for row in r.rows:
        label, colour, pattern = MISSING_ROWS[row.name]
        y = None if row.missing_acc is None else 100 * row.missing_acc
        fig.add_bar(
            x=[label],
            y=[y],
            name=label,
            marker=dict(color=colour, line=dict(color="#333", width=1), pattern=dict(shape=pattern, fgcolor="#333")),
            text=["" if y is None else f"{y:.1f} %"],
            textposition="outside",
            textfont=dict(size=17, color="#333"),
            cliponaxis=False,
            hovertemplate="%{x}: %{y:.2f} % of the test " + r.class_name + "s<extra></extra>",
        )
    _titled(fig, TITLES["missing-class"], f"share of the test images of class {r.class_name} recognised")
    fig.update_layout(showlegend=False)
    fig.update_xaxes(type="category")
    fig.update_yaxes(title_text=f"Class {r.class_name} recognised (%)", range=[0, 110])
    return fig


def students(r: RunResult) -> go.Figure:
    fig = go.Figure()
    for role in ("ensemble", "scratch", "distilled"):
        row = r.row(role)
        if row is not None:
            fig.add_bar(
                x=[ui.ROLE_LABELS[role]],
                y=[100 * row.accuracy],
                marker_color=ui.COLORS[role],
                text=[f"{100 * row.accuracy:.1f} %"],
                textposition="outside",
                cliponaxis=False,
                hovertemplate="%{x}: %{y:.2f} %<extra></extra>",
            )
    gain = r.kd_gain
    _titled(fig, TITLES["students"], "" if gain is None else f"KD gain {100 * gain:+.1f} points")
    fig.update_layout(showlegend=False)
    values = [100 * row.accuracy for row in r.rows]
    fig.update_yaxes(title_text="Test accuracy (%)", range=[_accuracy_floor(values, margin=5), 102])
    return fig


def learning_curves(r: RunResult) -> go.Figure:
    fig = go.Figure()
    for role in ("scratch", "distilled"):
        epochs = r.curves.get(role, [])
        fig.add_scatter(
            x=[e.epoch for e in epochs],
            y=[100 * e.test_acc for e in epochs],
            name=ui.ROLE_LABELS[role],
            mode="lines+markers",
            line=dict(color=ui.COLORS[role], width=4),
            hovertemplate="epoch %{x}: %{y:.2f} %<extra>" + role + "</extra>",
        )
    _titled(fig, TITLES["learning-curves"], "higher is better")
    _bottom_legend(fig)
    fig.update_xaxes(title_text="Epoch")
    fig.update_yaxes(title_text="Test accuracy (%)")
    return fig


LESSON_CHARTS = {
    "soft-targets": soft_targets,
    "gain-vs-temperature": lambda r: sweep_gain(r, "temperature"),
    "gain-vs-alpha": lambda r: sweep_gain(r, "alpha"),
    "sweep-heatmap": sweep_heatmap,
    "gain-vs-student": gain_vs_student,
    "gain-vs-fraction": gain_vs_fraction,
    "missing-class": missing_class,
    "students": students,
    "learning-curves": learning_curves,
}


def lesson_chart(chart: str, result) -> go.Figure:
    """The chart a lesson names (one of lessons.CHARTS), drawn from its run's result."""
    if chart not in LESSON_CHARTS:
        raise ValueError(f"chart must be one of: {', '.join(LESSON_CHARTS)}; got {chart!r}")
    return LESSON_CHARTS[chart](result)


# --------------------------------------------------------------------------- class board


def _board_x(series: classboard.Series, x) -> float | str:
    return x if series.axis == "student" else float(x)


def board_chart(series: classboard.Series) -> go.Figure:
    """One dot per run (or study cell) at its setting, and the mean per setting as a line, counts in the hover."""
    fig = go.Figure()
    fig.add_scatter(
        x=[_board_x(series, d.x) for d in series.dots],
        y=[100 * d.gain for d in series.dots],
        name="one run",
        mode="markers",
        marker=dict(size=11, color=ui.COLORS["distilled"], opacity=0.55, line=dict(color="#333", width=1)),
        customdata=[[d.kind, d.run_id] for d in series.dots],
        hovertemplate="%{x}: %{y:+.2f} points<br>%{customdata[0]}, run %{customdata[1]}<extra></extra>",
    )
    fig.add_scatter(
        x=[_board_x(series, m.x) for m in series.means],
        y=[100 * m.gain for m in series.means],
        name="mean per setting",
        mode="lines+markers",
        line=dict(color="#333", width=3),
        marker=dict(size=16, symbol="diamond", color="#333"),
        customdata=[m.count for m in series.means],
        hovertemplate="%{x}: mean %{y:+.2f} points over %{customdata} runs<extra></extra>",
    )
    n = len(series.dots)
    subtitle = f"● one run ({n} in all) · ◆ mean per setting · above 0: the teacher helped"
    _titled(fig, BOARD_TITLES[series.axis], subtitle, height=400)
    fig.update_layout(showlegend=False)
    if series.axis == "student":
        fig.update_xaxes(type="category", categoryorder="array", categoryarray=list(series.order))
    elif series.axis == "fraction":
        fig.update_xaxes(type="log", tickformat=".0%")
    fig.update_xaxes(title_text=series.label)
    _gain_axis(fig, [100 * d.gain for d in series.dots])
    if not series.dots:
        fig.add_annotation(
            text="no runs yet", showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5, font=dict(size=18)
        )
    return fig


# --------------------------------------------------------------------------- Distill

Curves = dict[str, list[events.Step | events.Epoch]]
STUDENTS = ("scratch", "distilled")
SHORT = {"scratch": "Scratch", "distilled": "Distilled"}


def _live_figure(
    traces: list[dict],
    title: str,
    subtitle: str,
    epochs: int,
    yaxis: dict,
    *,
    empty_text: str | None,
    empty_y: float,
    shapes=(),
    annotations=(),
    legend=None,
) -> go.Figure:
    """One figure from plain dicts, validated once: the live charts are rebuilt every second."""
    notes = list(annotations)
    if empty_text:
        notes.append(dict(text=empty_text, showarrow=False, x=epochs / 2, y=empty_y, font=dict(size=18, color="#777")))
    fig = go.Figure(
        data=traces,
        layout=dict(
            # Short titles with a subtitle fit a phone.
            title=dict(text=title, subtitle=dict(text=subtitle, font=SUBTITLE_FONT)),
            legend={**dict(orientation="h", yanchor="top", y=-0.22, xanchor="left", x=0), **(legend or {})},
            xaxis=dict(title=dict(text="Epoch"), range=[0, epochs], dtick=max(1, math.ceil(epochs / 10))),
            yaxis=yaxis,
            shapes=list(shapes),
            annotations=notes,
        ),
    )
    ui.readable(fig, CHART_HEIGHT)
    fig.update_layout(margin=dict(t=90))
    return fig


def training_accuracy(curves: Curves, epochs: int, teacher_acc: float | None = None) -> go.Figure:
    """Both students' test accuracy per epoch, live or finished, with the teacher ensemble's as a dotted line."""
    traces, values = [], []
    # A born-again run's middle generations ("generation 1", …) train between the scratch and the distilled
    # student: drawn thinner in the distilled colour, so the live chart moves while they train.
    middle = [m for m in curves if m not in STUDENTS]
    for m in (STUDENTS[0], *middle, STUDENTS[1]):
        pts = [e for e in curves.get(m, []) if isinstance(e, events.Epoch)]
        y = [100 * e.test_acc for e in pts]
        values += y
        role = m if m in STUDENTS else "distilled"
        traces.append(
            dict(
                type="scatter",
                x=[e.epoch for e in pts],
                y=y,
                name=ui.ROLE_LABELS[m] if m in STUDENTS else f"Born-again {m}",
                mode="lines+markers",
                line=dict(
                    color=ui.COLORS[role], width=4 if m in STUDENTS else 2, dash="solid" if m in STUDENTS else "dot"
                ),
                marker=dict(size=9 if m in STUDENTS else 6),
                hovertemplate="epoch %{x}: %{y:.2f} %<extra>" + SHORT.get(m, m) + "</extra>",
            )
        )
    shapes, notes = [], []
    if teacher_acc is not None:
        t = 100 * teacher_acc
        values.append(t)
        line = dict(color=ui.COLORS["ensemble"], dash="dot", width=3)
        shapes.append(dict(type="line", xref="paper", x0=0, x1=1, y0=t, y1=t, line=line))
        notes.append(
            dict(
                text=f"teacher ensemble {t:.1f} %",
                xref="paper",
                x=0,
                y=t,
                xanchor="left",
                yanchor="bottom",
                showarrow=False,
                font=dict(color=ui.COLORS["ensemble"]),
            )
        )
    return _live_figure(
        traces,
        "Test accuracy",
        "higher is better",
        epochs,
        dict(title=dict(text="Test accuracy (%)"), range=[_accuracy_floor(values), 100.5]),
        empty_text=None if values else "appears after the first epoch",
        empty_y=50,
        shapes=shapes,
        annotations=notes,
        # With born-again generations the legend wraps to a column (no two long names fit a row): lower, so
        # it clears the axis title.
        legend=dict(y=-0.3) if middle else None,
    )


def training_loss(curves: Curves, epochs: int) -> go.Figure:
    """Both students' hard (labels) and soft (teacher) loss on a log axis, with a dot on each newest point."""
    traces, values = [], []
    for m in STUDENTS:
        pts = curves.get(m, [])
        x = [e.epoch for e in pts]
        for part, dash in (("hard", "solid"), ("soft", "dash")):
            y = [getattr(e, part) for e in pts]
            values += [v for v in y if v is not None and v > 0]
            traces.append(
                dict(
                    type="scatter",
                    x=x,
                    y=y,
                    name=f"{SHORT[m]} {part}",
                    mode="lines+markers",
                    line=dict(color=ui.COLORS[m], dash=dash, width=3),
                    marker=dict(size=[0] * (len(x) - 1) + [9] if x else [], color=ui.COLORS[m]),
                    hovertemplate="epoch %{x:.2f}: %{y:.3f}<extra>" + f"{SHORT[m]} {part}</extra>",
                )
            )
    # Half-decade steps on a log axis: both parts stay readable although they differ by 10x or more.
    if values:
        lo, hi = math.floor(2 * math.log10(min(values))) / 2, math.ceil(2 * math.log10(max(values))) / 2
        hi = max(hi, lo + 1)
    else:
        lo, hi = -1.5, 1.0
    ticks = [m * 10**e for e in range(-4, 4) for m in (1, 2, 5) if lo <= math.log10(m * 10**e) <= hi]
    return _live_figure(
        traces,
        "Training loss",
        "solid: hard part (labels) · dashed: soft part (teacher)",
        epochs,
        dict(
            title=dict(text="Loss (log scale)"),
            type="log",
            range=[lo, hi],
            tickvals=ticks,
            ticktext=[f"{v:g}" for v in ticks],
        ),
        empty_text=None if values else "appears when the students start",
        empty_y=(lo + hi) / 2,
        # Two entries per row, so the four loss parts line up as a 2 x 2 key.
        legend=dict(entrywidth=0.5, entrywidthmode="fraction"),
    )


def gain_per_class(result: RunResult) -> go.Figure:
    """Distilled minus scratch accuracy on each class's test images, green where the teacher helped."""
    gains = result.per_class_gain
    x = [c for c, g in zip(result.classes, gains) if g is not None]
    y = [100 * g for g in gains if g is not None]
    fig = go.Figure(
        go.Bar(
            x=x,
            y=y,
            marker_color=[UP if v >= 0 else DOWN for v in y],
            text=[f"{v:+.1f}" for v in y],
            textposition="outside",
            cliponaxis=False,
            hovertemplate="%{x}: %{y:+.2f} points<extra></extra>",
        )
    )
    _titled(fig, "KD gain per class", "distilled − scratch · green: distilled better")
    fig.update_layout(showlegend=False)
    # Zero always shows; the axis covers only the side(s) the bars use, plus room for the labels.
    lo, hi = min(y + [0.0]), max(y + [0.0])
    pad = max(1.0, 0.25 * (hi - lo))
    fig.update_yaxes(
        title_text="Accuracy difference (points)",
        range=[lo - pad, hi + pad],
        zeroline=True,
        zerolinewidth=2,
        zerolinecolor="#444",
    )
    fig.update_xaxes(title_text="Class", type="category")
    missing = [c for c, g in zip(result.classes, gains) if g is None]
    if missing:
        fig.add_annotation(
            text=f"no test images of: {', '.join(missing)}",
            showarrow=False,
            xref="paper",
            yref="paper",
            x=1,
            y=1.02,
            xanchor="right",
            font=dict(size=14, color="#777"),
        )
    return fig


# --------------------------------------------------------------------------- Dark knowledge

LOG_FLOOR = 1e-4  # percent; smaller probabilities sit at the bottom of the log axis


def probabilities(
    probs: torch.Tensor, classes, title: str, color: str, name: str, label: int | None, log: bool
) -> go.Figure:
    """One model's probabilities for one image as bars, the true class outlined; `log` shows the tiny ones."""
    pct = (probs * 100).tolist()
    shown = [max(p, LOG_FLOOR) for p in pct] if log else pct
    fig = go.Figure(
        go.Bar(
            x=list(classes),
            y=shown,
            name=name,
            marker_color=color,
            text=[f"{p:.1f}" if p >= 0.05 else "" for p in pct],
            textposition="outside",
            textfont_size=14,
            cliponaxis=False,
            showlegend=True,
            marker_line=dict(color="#000000", width=[4 if i == label else 0 for i in range(len(pct))]),
            customdata=pct,
            hovertemplate="%{x}: %{customdata:.3f} %<extra></extra>",
        )
    )
    ui.readable(fig, 420)
    fig.update_layout(
        title=dict(text=title),
        bargap=0.25,
        legend=dict(orientation="h", yanchor="bottom", y=1.0, x=1, xanchor="right"),
    )
    fig.update_xaxes(title_text="class" + (" (outlined: true class)" if label is not None else ""), type="category")
    _probability_axis(fig, "probability", log, top=110)
    return fig


def _probability_axis(fig: go.Figure, title: str, log: bool, top: float) -> None:
    """A y axis of probabilities in percent: linear up to `top`, or log down to LOG_FLOOR so tiny ones show."""
    if log:
        fig.update_yaxes(
            title_text=f"{title} (%, log scale)", type="log", range=[math.log10(LOG_FLOOR), math.log10(150)]
        )
    else:
        fig.update_yaxes(title_text=f"{title} (%)", range=[0, top])


def entropy_vs_temperature(
    grid: Sequence[float],
    all_curve: list[float],
    image_curve: list[float] | None,
    temperature: float,
    at_t: list[float],
    num_classes: int,
) -> go.Figure:
    """Mean entropy of the soft targets over the test set (and the selected image's) against T, on a log T axis."""
    color = ui.COLORS["ensemble"]
    fig = go.Figure()
    fig.add_scatter(x=grid, y=all_curve, mode="lines", name="all test images (mean)", line=dict(color=color, width=4))
    if image_curve is not None:
        fig.add_scatter(
            x=grid, y=image_curve, mode="lines", name="the selected image", line=dict(color=color, width=3, dash="dash")
        )
    fig.add_scatter(
        x=[temperature] * len(at_t),
        y=at_t,
        mode="markers",
        name=f"T = {temperature:g}",
        marker=dict(color="#000000", size=14, symbol="circle"),
    )
    uniform = math.log2(num_classes)
    fig.add_hline(
        y=uniform,
        line=dict(color=ui.COLORS["teacher"], dash="dot", width=2),
        annotation_text=f"all classes equally likely ({uniform:.2f} bits)",
        annotation_position="top left",
    )
    ui.readable(fig, 420)
    fig.update_layout(
        title=dict(text="Entropy of the soft targets vs T"),
        legend=dict(yanchor="bottom", y=0.03, xanchor="right", x=0.98, bgcolor="rgba(255,255,255,0.8)"),
    )
    # A log axis gives the low temperatures, where most of the change happens, room to show it.
    fig.update_xaxes(
        title_text="temperature T (log scale)",
        type="log",
        range=[-0.02, math.log10(21)],
        tickvals=[1, 2, 3, 4, 5, 7, 10, 15, 20],
    )
    fig.update_yaxes(title_text="entropy of the soft targets (bits)", range=[0, uniform * 1.2])
    return fig


def class_similarity(sim: torch.Tensor, classes, temperature: float) -> go.Figure:
    """The teacher's mean soft target per true class (rows) and class (columns), the diagonal left blank."""
    pct = (sim * 100).tolist()
    for i in range(len(pct)):
        pct[i][i] = None  # the true class dwarfs everything else; leaving it blank lets the rest show
    fig = go.Figure(
        go.Heatmap(
            z=pct,
            x=list(classes),
            y=list(classes),
            colorscale="Blues",
            texttemplate="%{z:.1f}",
            textfont=dict(size=13),
            hoverongaps=False,
            xgap=1,
            ygap=1,
            colorbar=dict(title=dict(text="mean soft<br>probability (%)", side="right")),
            hovertemplate="true class %{y}<br>soft target for %{x}: %{z:.2f} %<extra></extra>",
        )
    )
    ui.readable(fig, 560)
    fig.update_layout(title=dict(text=f"Which classes the teacher finds alike (T = {temperature:g})"))
    fig.update_xaxes(title_text="soft target for class", type="category", side="bottom")
    fig.update_yaxes(title_text="true class", type="category", autorange="reversed")
    return fig


SPLIT_COLORS = {"tckd": "#56B4E9", "nckd": ui.COLORS["ensemble"], "lost": "#E8D3E0"}  # Okabe-Ito sky blue


def dkd_split_image(tckd: float, nckd: float, weight: float, temperature: float) -> go.Figure:
    """Classical KD's soft term for one image as a stacked bar (TCKD + (1 - p_t) NCKD) beside decoupled KD's
    whole NCKD, so the part of the dark knowledge classical KD turns down shows as a pale block. Measured
    against a blank student (every class equally likely), as kdcore.dark.dkd_parts does by default."""
    rows = ["classical KD", "decoupled KD (β = 1)"]
    fig = go.Figure()
    fig.add_bar(
        x=rows,
        y=[tckd, tckd],
        name="TCKD: how sure of the true class",
        marker_color=SPLIT_COLORS["tckd"],
        hovertemplate="TCKD × T²: %{y:.3f}<extra></extra>",
    )
    fig.add_bar(
        x=rows,
        y=[weight * nckd, nckd],
        name="NCKD: how the rest is spread (dark knowledge)",
        marker_color=SPLIT_COLORS["nckd"],
        text=[f"× {weight:.2f}", ""],
        textposition="inside",
        textfont=dict(size=15, color="#000"),
        hovertemplate="NCKD × T² as used: %{y:.3f}<extra></extra>",
    )
    fig.add_bar(
        x=rows,
        y=[(1 - weight) * nckd, 0.0],
        name="NCKD that classical KD turns down",
        marker=dict(color=SPLIT_COLORS["lost"], line=dict(color=SPLIT_COLORS["nckd"], width=2)),
        hovertemplate="turned down: %{y:.3f}<extra></extra>",
    )
    ui.readable(fig, 420)
    fig.update_layout(
        barmode="stack",
        title=dict(text=f"The soft target's two parts at T = {temperature:g}"),
        legend=dict(orientation="h", yanchor="top", y=-0.12, x=0, xanchor="left", traceorder="normal"),
        margin=dict(l=10, r=10, t=60, b=10),
    )
    fig.update_yaxes(title_text="KL to a blank student, × T²", rangemode="tozero")
    return fig


def dkd_split_vs_temperature(grid: Sequence[float], curve: dict, temperature: float, at_t: dict) -> go.Figure:
    """Mean TCKD and mean (1 - p_t) NCKD over the test images against T (log axis), the current T marked."""
    fig = go.Figure()
    lines = (
        ("tckd", "TCKD (how sure of the true class)", SPLIT_COLORS["tckd"], "solid"),
        ("weighted_nckd", "(1 − p_t) × NCKD: dark knowledge in classical KD", SPLIT_COLORS["nckd"], "solid"),
        ("nckd", "NCKD kept whole (DKD)", SPLIT_COLORS["nckd"], "dot"),
    )
    for key, name, color, dash in lines:
        fig.add_scatter(
            x=list(grid),
            y=curve[key],
            mode="lines",
            name=name,
            line=dict(color=color, width=4 if dash == "solid" else 3, dash=dash),
            hovertemplate=f"T = %{{x:g}}: %{{y:.3f}}<extra>{name}</extra>",
        )
    fig.add_scatter(
        x=[temperature] * 3,
        y=[at_t[key] for key, *_ in lines],
        mode="markers",
        name=f"T = {temperature:g}",
        marker=dict(color="#000000", size=13),
        hoverinfo="skip",
    )
    fig.add_vline(x=temperature, line=dict(color="#000000", width=1, dash="dot"))
    ui.readable(fig, 420)
    fig.update_layout(
        title=dict(text="The two parts over the test images vs T"),
        legend=dict(orientation="h", yanchor="top", y=-0.27, x=0, xanchor="left"),
    )
    fig.update_xaxes(
        title_text="temperature T (log scale)", type="log", range=[-0.02, math.log10(21)], tickvals=[1, 2, 3, 5, 10, 20]
    )
    fig.update_yaxes(title_text="mean KL × T²", rangemode="tozero")
    return fig


def watch_probabilities(snap: dict, classes, label: int, epoch: int, log: bool = False) -> go.Figure:
    """The teacher's and each student's probabilities for one probe image after `epoch`, as grouped bars;
    `log` shows the tiny ones, as on the page's other probability charts."""
    names = {**ui.ROLE_LABELS, "teacher": "Teacher ensemble"}
    colors = {**ui.COLORS, "teacher": ui.COLORS["ensemble"]}
    fig = go.Figure()
    for role, probs in snap.items():
        pct = (probs * 100).tolist()
        fig.add_bar(
            x=list(classes),
            y=[max(v, LOG_FLOOR) for v in pct] if log else pct,
            customdata=pct,
            name=names[role],
            marker_color=colors[role],
            marker_line=dict(color="#000000", width=[3 if i == label else 0 for i in range(len(pct))]),
            hovertemplate=f"{names[role]}<br>%{{x}}: %{{customdata:.3f}} %<extra></extra>",
        )
    ui.readable(fig, 460)
    fig.update_layout(title=dict(text=f"This image after epoch {epoch}"), barmode="group", bargap=0.2)
    _bottom_legend(fig, -0.25)
    fig.update_xaxes(title_text="class (outlined: true class)", type="category")
    _probability_axis(fig, "probability at T = 1", log, top=105)
    return fig


def watch_curve(curves: dict, key: str, epoch: int) -> go.Figure:
    """Agreement with the teacher ("agreement") or mean KL to it ("kl") on the probe images per epoch, per
    student, with the shown epoch marked."""
    agreement = key == "agreement"
    fig = go.Figure()
    for role, series in curves.items():
        values = [v * 100 for v in series[key]] if agreement else series[key]
        fig.add_scatter(
            x=list(range(1, len(values) + 1)),
            y=values,
            mode="lines+markers",
            name=ui.ROLE_LABELS[role],
            line=dict(color=ui.COLORS[role], width=3),
            hovertemplate=f"epoch %{{x}}: %{{y:.{1 if agreement else 3}f}}<extra>{ui.ROLE_LABELS[role]}</extra>",
        )
    fig.add_vline(
        x=epoch,
        line=dict(color="#000000", width=2, dash="dot"),
        annotation_text=f"epoch {epoch}",
        annotation_position="bottom right" if epoch == 1 else "bottom left",
    )
    ui.readable(fig, 360)
    title = "Agrees with the teacher (probe images)" if agreement else "Mean KL to the teacher (probe images)"
    fig.update_layout(title=dict(text=title), legend=dict(orientation="h", yanchor="top", y=-0.25, x=0))
    fig.update_xaxes(title_text="epoch", dtick=max(1, len(next(iter(curves.values()))[key]) // 10))
    if agreement:
        fig.update_yaxes(title_text="same top class (%)", range=[0, 105])
    else:
        fig.update_yaxes(title_text="KL(teacher ‖ student)", rangemode="tozero")
    return fig


KL_FLOOR = 1e-4  # a student that matches the teacher exactly sits at the left edge of the log axis


def watch_points(points, phrases, epoch: int, selected: int | None) -> go.Figure:
    """Every probe image for each student after `epoch`: KL to the teacher against the student's probability of
    the teacher's answer (circles agree, crosses do not); customdata carries the probe position for selection.
    `phrases` names each class as read aloud ("an 8"), for the hover text."""
    fig = go.Figure()
    for role in dict.fromkeys(p.role for p in points):
        mine = [p for p in points if p.role == role]
        fig.add_scatter(
            x=[max(p.kl, KL_FLOOR) for p in mine],
            y=[p.teacher_class_prob * 100 for p in mine],
            mode="markers",
            name=ui.ROLE_LABELS[role],
            customdata=[[p.position, p.test_index, phrases[p.label]] for p in mine],
            marker=dict(
                color=ui.COLORS[role],
                size=[16 if p.position == selected else 9 for p in mine],
                symbol=["circle" if p.agrees else "x" for p in mine],
                line=dict(color="#000000", width=[2.5 if p.position == selected else 0 for p in mine]),
                opacity=0.85,
            ),
            hovertemplate="test image #%{customdata[1]} (%{customdata[2]})<br>KL %{x:.3f}, "
            "teacher's answer %{y:.1f} %<extra>" + ui.ROLE_LABELS[role] + "</extra>",
        )
    ui.readable(fig, 420)
    fig.update_layout(
        title=dict(text=f"Probe images after epoch {epoch}"),
        legend=dict(orientation="h", yanchor="top", y=-0.2, x=0),
        clickmode="event+select",
    )
    ticks = [1e-4, 1e-3, 1e-2, 0.1, 1, 10]
    fig.update_xaxes(
        title_text="KL(teacher ‖ student), log scale", type="log", tickvals=ticks, ticktext=[f"{t:g}" for t in ticks]
    )
    fig.update_yaxes(title_text="on the teacher's answer (%)", range=[-3, 103])
    return fig


# --------------------------------------------------------------------------- Teachers


def grey_shades(n: int) -> list[str]:
    """n distinguishable greys from dark to light, so members stay visually secondary to the ensemble."""
    levels = [0x4D + (0xBF - 0x4D) * i // max(1, n - 1) for i in range(n)]
    return [f"#{v:02X}{v:02X}{v:02X}" for v in levels]


def teacher_accuracy_per_class(rows, classes) -> go.Figure:
    """Each member's and the ensemble's test accuracy per class, grouped bars, the axis cut to show differences."""
    members = [r for r in rows if r.role == "teacher"]
    fig = go.Figure()
    values = []
    ensemble = [r for r in rows if r.role == "ensemble"]
    for r, colour in zip(members + ensemble, grey_shades(len(members)) + [ui.COLORS["ensemble"]]):
        y = [None if a is None else 100 * a for a in r.per_class]
        values += [v for v in y if v is not None]
        name = "Ensemble" if r.role == "ensemble" and members else r.name
        fig.add_bar(
            x=list(classes),
            y=y,
            name=name,
            marker_color=colour,
            hovertemplate="%{x}: %{y:.1f} %<extra>" + name + "</extra>",
        )
    low = max(0.0, (min(values, default=0.0) // 5) * 5 - 5)
    _titled(fig, "Test accuracy per class", f"the axis starts at {low:.0f} % to show the differences", height=460)
    fig.update_layout(barmode="group")
    _bottom_legend(fig)
    fig.update_yaxes(title_text="Test accuracy (%)", range=[low, 100.5])
    fig.update_xaxes(title_text="Class", type="category")
    return fig


# --------------------------------------------------------------------------- Compare

MAX_MARKER_PX = 60  # diameter of the largest model's marker
# A run's two students share an architecture and so a latency: label them on different sides, the
# distilled one above, clear of the Pareto staircase. Teachers label below their markers, so the member
# nearest the ensemble (often the best one) does not write over the ensemble's label.
TEXT_POSITION = {
    "teacher": "bottom center",
    "ensemble": "top center",
    "scratch": "middle left",
    "distilled": "top center",
}


def point_label(model: str, role: str, run) -> str:
    """A few words beside each point: the teacher's name, "ensemble", or the student's run."""
    if role == "teacher":
        return model.removeprefix("teacher ")
    if role == "ensemble":
        return "ensemble" if model.startswith("ensemble") else model
    return f"run {run}"


def latency_ticks(latencies) -> list[float]:
    """Ticks for the log latency axis, in 1-2-5 steps (powers of ten over wide spans), from the last one
    at or below the fastest model / 1.3 to the first at or above the slowest x 1.3. The axis spans exactly
    these, so every point has a labelled tick on each side and room for its marker."""
    if len(latencies) == 0:
        return []
    lo, hi = float(min(latencies)) / 1.3, float(max(latencies)) * 1.3
    decades = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
    steps = (1, 2, 5) if hi / lo <= 10**3.5 else (1,)  # wider spans would crowd a narrow screen
    ticks = [m * 10.0**k for k in decades for m in steps]
    first = max(t for t in ticks if t <= lo)
    last = min(t for t in ticks if t >= hi)
    return [t for t in ticks if first <= t <= last]


def accuracy_vs_latency(df) -> go.Figure:
    """Every model of the comparison table at its latency and accuracy, marker area by parameters, Pareto front."""
    plot = df.dropna(subset=[report.LATENCY, report.ACCURACY])
    fig = go.Figure()
    front = plot[report.pareto_front(plot)].sort_values(report.LATENCY)
    fig.add_scatter(
        x=front[report.LATENCY],
        y=front[report.ACCURACY],
        mode="lines",
        line_shape="hv",
        line=dict(color="#444444", width=2, dash="dot"),
        hoverinfo="skip",
        name="Pareto front (best trade-offs)",
    )
    # Marker area grows with the parameter count, so a 40× smaller model looks 40× smaller.
    sizeref = 2.0 * plot[report.PARAMS].max() / MAX_MARKER_PX**2 if len(plot) else 1.0
    for role in ROLES:
        sub = plot[plot[report.ROLE] == role]
        if sub.empty:
            continue
        fig.add_scatter(
            x=sub[report.LATENCY],
            y=sub[report.ACCURACY],
            mode="markers+text",
            name=ui.ROLE_LABELS[role],
            text=[point_label(m, role, run) for m, run in zip(sub[report.MODEL], sub[report.RUN])],
            textposition=TEXT_POSITION[role],
            textfont=dict(size=ui.PLOT_FONT["size"] - 2),
            marker=dict(
                color=ui.COLORS[role],
                size=sub[report.PARAMS],
                sizemode="area",
                sizeref=sizeref,
                sizemin=7,
                symbol=["circle-open" if p else "circle" for p in sub[report.PARTIAL]],
                line=dict(color=ui.COLORS[role], width=3),
                opacity=0.85,
            ),
            customdata=list(
                zip(
                    sub[report.MODEL],
                    sub[report.PARAMS],
                    sub[report.DATASET],
                    ["yes, stopped early" if p else "no" for p in sub[report.PARTIAL]],
                )
            ),
            hovertemplate="<b>%{customdata[0]}</b><br>Accuracy: %{y:.1f} %<br>Latency: %{x:.2f} ms<br>"
            "Parameters: %{customdata[1]:,}<br>Dataset: %{customdata[2]}<br>"
            "Partial: %{customdata[3]}<extra></extra>",
        )
    ticks = latency_ticks(plot[report.LATENCY])
    _titled(
        fig,
        "Accuracy vs. latency",
        "up and to the left is better · marker area ∝ parameters · open marker = stopped run",
        height=600,
    )
    fig.update_layout(legend=dict(itemsizing="constant"))
    _bottom_legend(fig, y=-0.16)
    fig.update_xaxes(
        title_text="Latency for one image (ms, log scale)",
        type="log",
        tickvals=ticks,
        ticktext=[f"{t:g}" for t in ticks],
        range=[math.log10(ticks[0]), math.log10(ticks[-1])] if ticks else None,
    )
    fig.update_yaxes(title_text="Test accuracy (%)")
    return fig


# --------------------------------------------------------------------------- Experiments


def empty_sweep(temperatures: Sequence[float], alphas: Sequence[float]) -> dict:
    """A sweep snapshot with no cell done, so the grid shows before the first student finishes."""
    return {
        "temperatures": list(temperatures),
        "alphas": list(alphas),
        "accuracy": [[None] * len(alphas) for _ in temperatures],
        "scratch_acc": None,
        "best": None,
    }


def sweep_accuracy(snap: dict, live: bool) -> go.Figure:
    """Heatmap of the distilled students' test accuracy, white at the scratch student's, best cell outlined."""
    ts, als, s = snap["temperatures"], snap["alphas"], snap["scratch_acc"]
    best = snap.get("best")
    z = [[None if a is None else 100 * a for a in row] for row in snap["accuracy"]]
    text = [
        [
            ("★ " if best and (best["row"], best["col"]) == (i, j) else "") + f"{a:.1f} %<br>{a - 100 * s:+.1f}"
            if a is not None
            else ""
            for j, a in enumerate(row)
        ]
        for i, row in enumerate(z)
    ]
    x, y = [f"{a:g}" for a in als], [f"{t:g}" for t in ts]
    # Undone cells get their own grey layer so they read as "not yet", not as a colour on the scale.
    pending = [(i, j) for i, row in enumerate(z) for j, a in enumerate(row) if a is None]
    waiting = "waiting" if live else "not run"
    pending_text = [[""] * len(als) for _ in ts]
    for n, (i, j) in enumerate(pending):
        pending_text[i][j] = "training…" if live and n == 0 and s is not None else waiting
    fig = go.Figure()
    fig.add_heatmap(
        z=[[1 if a is None else None for a in row] for row in z],
        x=x,
        y=y,
        text=pending_text,
        texttemplate="%{text}",
        textfont=dict(size=15, color="#666"),
        showscale=False,
        colorscale=[[0, PENDING], [1, PENDING]],
        hoverinfo="skip",
        xgap=4,
        ygap=4,
    )
    if s is not None:
        # A symmetric range around the scratch accuracy puts it at the scale's white midpoint.
        span = max([abs(a - 100 * s) for row in z for a in row if a is not None] + [0.5])
        fig.add_heatmap(
            z=z,
            x=x,
            y=y,
            text=text,
            texttemplate="%{text}",
            textfont=dict(size=17),
            colorscale=[[0, DOWN], [0.5, NEUTRAL], [1, UP]],
            zmin=100 * s - span,
            zmax=100 * s + span,
            xgap=4,
            ygap=4,
            colorbar=dict(
                title=dict(text="Test accuracy (%)", side="right", font=dict(size=16, color="#333")),
                thickness=18,
                tickfont=dict(size=14),
            ),
            hovertemplate="T = %{y}, α = %{x}: %{z:.2f} %<extra></extra>",
        )
    if best is not None:
        i, j = best["row"], best["col"]
        fig.add_shape(type="rect", x0=j - 0.5, x1=j + 0.5, y0=i - 0.5, y1=i + 0.5, line=dict(color="#111", width=4))
    reference = "scratch student: appears first" if s is None else f"white = scratch student ({100 * s:.1f} %)"
    _titled(
        fig,
        "Test accuracy of the distilled student",
        f"{reference} · green: better, red: worse · ★ best · second line: points against scratch",
        height=max(CHART_HEIGHT, 170 + 75 * len(ts)),
    )
    fig.update_xaxes(title_text="α (weight of the teacher)", type="category", side="bottom", showgrid=False)
    fig.update_yaxes(title_text="temperature T", type="category", autorange="reversed", showgrid=False)
    fig.update_layout(plot_bgcolor="white")
    return fig


def _log_axis(values: list[float], labels: list[str], title: str) -> dict:
    """A log x axis ticked at exactly these values, padded so the outermost labels are not cut off."""
    lo, hi = math.log10(min(values)), math.log10(max(values))
    pad = max(0.12, 0.08 * (hi - lo))
    return dict(type="log", tickvals=values, ticktext=labels, range=[lo - pad, hi + pad], title_text=title)


def _students_against(snap: dict, x: list, custom: list, hover: str, title: str, subtitle: str) -> go.Figure:
    """Both students' test accuracy at each point of a study, with the teacher ensemble's as a dotted line."""
    fig, values = go.Figure(), []
    for role in STUDENTS:
        y = [None if p[f"{role}_acc"] is None else 100 * p[f"{role}_acc"] for p in snap["points"]]
        values += [v for v in y if v is not None]
        fig.add_scatter(
            x=x,
            y=y,
            name=ui.ROLE_LABELS[role],
            mode="lines+markers",
            customdata=custom,
            line=dict(color=ui.COLORS[role], width=4),
            marker=dict(size=11),
            hovertemplate=hover + "<extra>" + role + "</extra>",
        )
    teacher = snap.get("teacher_acc")
    _teacher_line(fig, teacher)
    _titled(fig, title, subtitle)
    _accuracy_axis(fig, values + ([100 * teacher] if teacher else []))
    return fig


def _study_gain(x: list, gains: list[float | None], hover: str, title: str, ticks: dict) -> go.Figure:
    fig = go.Figure()
    _gain_trace(fig, x, gains, "KD gain", hover)
    _titled(fig, title, "distilled − scratch · above 0: KD helps")
    fig.update_layout(showlegend=False)
    fig.update_xaxes(**ticks)
    _gain_axis(fig, [100 * g for g in gains if g is not None])
    return fig


def fraction_accuracy(snap: dict) -> go.Figure:
    x = [p["fraction"] for p in snap["points"]]
    fig = _students_against(
        snap,
        x,
        [[p["train_size"], p["epochs"]] for p in snap["points"]],
        "%{x:.0%} of the data (%{customdata[0]} images, %{customdata[1]} epochs): %{y:.1f} %",
        "Test accuracy against training data",
        "the same student, from scratch and distilled",
    )
    _bottom_legend(fig, y=-0.25)
    fig.update_xaxes(**_log_axis(x, [describe.share(f) for f in x], "Share of the training images (log scale)"))
    return fig


def fraction_gain(snap: dict) -> go.Figure:
    x = [p["fraction"] for p in snap["points"]]
    ticks = _log_axis(x, [describe.share(f) for f in x], "Share of the training images (log scale)")
    hover = "%{x:.0%} of the data: %{y:+.2f} points<extra></extra>"
    return _study_gain(x, [p["gain"] for p in snap["points"]], hover, "What the teacher adds at each data size", ticks)


def _capacity_ticks(snap: dict) -> dict:
    points = snap["points"]
    labels = [f"{p['student']}<br>{describe.params(p['params'])}" for p in points]
    return _log_axis([p["params"] for p in points], labels, "Student parameters (log scale)")


def capacity_accuracy(snap: dict) -> go.Figure:
    points = snap["points"]
    teacher = snap.get("teacher_params")
    fig = _students_against(
        snap,
        [p["params"] for p in points],
        [p["student"] for p in points],
        "%{customdata} (%{x:,} parameters): %{y:.1f} %",
        "Test accuracy against student size",
        f"teacher ensemble: {describe.params(teacher)} parameters" if teacher else "",
    )
    assisted = [p for p in points if p.get("assistant")]
    if assisted:
        # Mirzadeh et al.'s chain, for the sizes smaller than the assistant: ensemble → assistant → student.
        helper = assisted[0]["assistant"]
        y = [None if p.get("assisted_acc") is None else 100 * p["assisted_acc"] for p in assisted]
        fig.add_scatter(
            x=[p["params"] for p in assisted],
            y=y,
            name=f"Distilled through the assistant {helper}",
            mode="lines+markers",
            customdata=[p["student"] for p in assisted],
            line=dict(color=ASSISTANT_COLOR, width=4, dash="dash"),
            marker=dict(size=11, symbol="diamond"),
            hovertemplate="%{customdata} via " + helper + ": %{y:.1f} %<extra>with assistant</extra>",
        )
        shown = [v for v in y if v is not None]
        if shown:
            fig.update_yaxes(range=[min(fig.layout.yaxis.range[0], _accuracy_floor(shown)), 100.5])
    _bottom_legend(fig, y=-0.36)  # below the two-line tick labels and the axis title
    fig.update_xaxes(**_capacity_ticks(snap))
    return fig


def capacity_gain(snap: dict) -> go.Figure:
    x = [p["params"] for p in snap["points"]]
    hover = "%{x:,} parameters: %{y:+.2f} points<extra></extra>"
    gains = [p["gain"] for p in snap["points"]]
    return _study_gain(x, gains, hover, "KD gain against student size", _capacity_ticks(snap))


def missing_class_study(snap: dict) -> go.Figure:
    """Each model's accuracy on the class the students never saw, next to its accuracy on all classes."""
    name = snap["class_name"]
    fig = go.Figure()
    for row in snap["rows"]:
        _, colour, pattern = MISSING_ROWS[row["name"]]
        label = MISSING_LEGEND[row["name"]]
        y = [None if row[k] is None else 100 * row[k] for k in ("missing_acc", "accuracy")]
        fig.add_bar(
            x=[f"class {name} (never seen)", "all classes"],
            y=y,
            name=label,
            marker=dict(
                color=colour,
                line=dict(color="#333", width=1),
                pattern=dict(shape=pattern, fgcolor="#333", fillmode="overlay", solidity=0.25),
            ),
            text=[f"{v:.1f} %" if v is not None else "" for v in y],
            textposition="outside",
            textfont=dict(size=16, color="#333"),
            cliponaxis=False,
            hovertemplate="%{x}: %{y:.2f} %<extra>" + label + "</extra>",
        )
    _titled(
        fig,
        f"Accuracy with class {name} left out of the students' training",
        f"share of test images classified correctly · left: class {name} only · right: all classes",
    )
    _bottom_legend(fig, y=-0.25)
    fig.update_layout(barmode="group", bargroupgap=0.08)
    fig.update_yaxes(title_text="Test accuracy (%)", range=[0, 110])
    fig.update_xaxes(type="category")
    return fig


# --------------------------------------------------------------------------- History

# One colour per run; the role colours (blue scratch, orange distilled) come last so that with a few runs
# nobody reads a run's colour as a role. The line style carries the role instead.
RUN_COLORS = ("#009E73", "#D55E00", "#56B4E9", "#000000", "#CC79A7", "#0072B2", "#E69F00", "#7F7F7F")
DASH = {"distilled": "solid", "scratch": "dash"}


def saved_runs_accuracy(records) -> go.Figure:
    """Test accuracy per epoch of saved runs' two students: a colour per run, a line style per role."""
    fig = go.Figure()
    values, last_epoch = [], 1
    for n, rec in enumerate(records):
        color = RUN_COLORS[n % len(RUN_COLORS)]
        for role in ("distilled", "scratch"):
            pts = [e for e in rec.curves.get(role, []) if e.get("test_acc") is not None]
            x, y = [e["epoch"] for e in pts], [100 * e["test_acc"] for e in pts]
            values += y
            last_epoch = max([last_epoch, rec.config.get("epochs") or 1, *x])
            fig.add_scatter(
                x=x,
                y=y,
                name=f"run {rec.id} · {role}",
                mode="lines+markers",
                legendgroup=str(rec.id),
                line=dict(color=color, dash=DASH[role], width=4 if role == "distilled" else 3),
                marker=dict(size=9 if role == "distilled" else 7, color=color),
                hovertemplate="epoch %{x}: %{y:.2f} %<extra>" + f"run {rec.id} · {role}</extra>",
            )
    _titled(
        fig,
        "Test accuracy of the selected runs",
        "solid: distilled student · dashed: scratch student (no teacher)",
        height=480,
    )
    _bottom_legend(fig)
    _accuracy_axis(fig, values)
    fig.update_xaxes(title_text="Epoch", range=[0, last_epoch + 0.2], dtick=max(1, math.ceil(last_epoch / 10)))
    if not values:
        fig.add_annotation(
            text="these runs stopped before their first epoch finished",
            showarrow=False,
            x=last_epoch / 2,
            y=50,
            font=dict(size=18, color="#777"),
        )
    return fig


# --------------------------------------------------------------------------- methods (Distill)

PART_DASH = {"tckd": "solid", "nckd": "dash"}


def dkd_parts(curves: Curves, epochs: int) -> go.Figure:
    """DKD's two soft-loss parts of the distilled student per epoch (kdcore.methods.loss_parts), T²-scaled and
    unweighted: what α_tc and β_nc multiply."""
    rows = methods.loss_parts(curves, "distilled")
    traces, values = [], []
    for part, points in rows.items():
        values += [v for _, v in points]
        traces.append(
            dict(
                type="scatter",
                x=[e for e, _ in points],
                y=[v for _, v in points],
                name=methods.PARTS[part],
                mode="lines+markers",
                line=dict(color=ui.COLORS["distilled"], dash=PART_DASH[part], width=4),
                marker=dict(size=9),
                hovertemplate="epoch %{x}: %{y:.4f}<extra>" + methods.PARTS[part] + "</extra>",
            )
        )
    top = max(values, default=1.0) * 1.15 or 1.0
    return _live_figure(
        traces,
        "DKD's two parts (distilled student)",
        "T² × KL per part, before the weights α_tc and β_nc",
        epochs,
        dict(title=dict(text="Loss part"), range=[0, top], rangemode="tozero"),
        empty_text=None if values else "appears after the first epoch",
        empty_y=top / 2,
    )


def generation_accuracy(rows: Sequence[methods.GenerationRow], teacher_acc: float | None) -> go.Figure:
    """Test accuracy per born-again generation (0 = the scratch student), with the teacher ensemble's line."""
    fig = go.Figure()
    y = [100 * r.accuracy for r in rows]
    fig.add_bar(
        x=[
            f"{r.generation}: {'scratch' if r.generation == 0 else 'distilled' if r.distilled else 'born-again'}"
            for r in rows
        ],
        y=y,
        marker=dict(
            color=[ui.COLORS["scratch"] if r.generation == 0 else ui.COLORS["distilled"] for r in rows],
            opacity=[1.0 if r.generation == 0 or r.distilled else 0.6 for r in rows],
        ),
        text=[f"{v:.1f} %" for v in y],
        textposition="outside",
        textfont=dict(size=17, color="#333"),
        cliponaxis=False,
        showlegend=False,
        hovertemplate="generation %{x}: %{y:.2f} %<extra></extra>",
    )
    _teacher_line(fig, teacher_acc)
    _titled(fig, "Test accuracy per generation", "each generation learns from the one before · 0 = scratch student")
    fig.update_xaxes(title_text="Generation", type="category")
    low = _accuracy_floor(y + ([100 * teacher_acc] if teacher_acc is not None else []), margin=3.0)
    fig.update_yaxes(title_text="Test accuracy (%)", range=[low, 101])
    return fig
