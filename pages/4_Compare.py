"""Compare page: every model this session's distillation runs produced, in one table and an accuracy-latency chart."""

import json
import math

import plotly.graph_objects as go
import streamlit as st
from streamlit.errors import StreamlitPageNotFoundError

import ui
from kdcore import export, jobs, models, report
from kdcore.experiments import ROLES

st.set_page_config(page_title="Compare models · KD Playground", page_icon="⚖️", layout="wide")

ACTIVE = (jobs.JobState.QUEUED, jobs.JobState.RUNNING)
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


@st.fragment(run_every=3)
def refresh_when_runs_finish(active: int) -> None:
    # The table is built once per page run; rerun the page when a training run finishes.
    if sum(j.state in ACTIVE for j in ui.my_jobs("distill")) != active:
        st.rerun()


def table_view(df):
    shown = df.copy()
    shown[report.MODEL] = [f"⚠ {m} (partial)" if p else m for m, p in zip(df[report.MODEL], df[report.PARTIAL])]
    shown[report.ROLE] = df[report.ROLE].str.capitalize()
    shown[report.THROUGHPUT] = df[report.THROUGHPUT].round()
    num = st.column_config.NumberColumn
    config = {
        report.MODEL: st.column_config.TextColumn(
            width="large", pinned=True, help="⚠ marks students of a run stopped early."
        ),
        report.ACCURACY: num(format="%.1f", help="Share of test images classified correctly."),
        report.PARAMS: num(format="localized", help="Number of weights (all members for the ensemble)."),
        report.SIZE: num(format="%.2f", help="Size of the weights file in megabytes."),
        report.LATENCY: num(format="%.2f", help="Time to classify one image on this machine's CPU."),
        report.THROUGHPUT: num(format="localized", help="Images per second in batches of 256."),
        report.SPEEDUP: num(format="%.1f", help="Ensemble latency divided by this model's latency."),
        report.COMPRESSION: num(format="%.1f", help="Ensemble parameters divided by this model's parameters."),
        report.AGREEMENT: num(format="%.1f", help="How often this model picks the same class as the teacher ensemble."),
        report.ECE: num(
            format="%.3f",
            help="Expected calibration error: gap between confidence and accuracy; 0 is perfectly calibrated.",
        ),
        report.PARTIAL: st.column_config.CheckboxColumn(help="The run was stopped before its last epoch."),
    }
    # One dataset needs no Dataset column on screen; the CSV keeps every column.
    order = [c for c in shown.columns if c != report.DATASET or df[report.DATASET].nunique() > 1]
    st.dataframe(shown, hide_index=True, width="stretch", column_config=config, column_order=order)


def point_label(model: str, role: str, run: str) -> str:
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


def accuracy_latency_figure(df) -> go.Figure:
    plot = df.dropna(subset=[report.LATENCY, report.ACCURACY])
    fig = go.Figure()
    front = plot[report.pareto_front(plot)].sort_values(report.LATENCY)
    fig.add_trace(
        go.Scatter(
            x=front[report.LATENCY],
            y=front[report.ACCURACY],
            mode="lines",
            line_shape="hv",
            line=dict(color="#444444", width=2, dash="dot"),
            hoverinfo="skip",
            name="Pareto front (best trade-offs)",
        )
    )
    # Marker area grows with the parameter count, so a 40× smaller model looks 40× smaller.
    sizeref = 2.0 * plot[report.PARAMS].max() / MAX_MARKER_PX**2 if len(plot) else 1.0
    for role in ROLES:
        sub = plot[plot[report.ROLE] == role]
        if sub.empty:
            continue
        fig.add_trace(
            go.Scatter(
                x=sub[report.LATENCY],
                y=sub[report.ACCURACY],
                mode="markers+text",
                name=ui.ROLE_LABELS[role],
                text=[point_label(m, role, run) for m, run in zip(sub[report.MODEL], sub[report.RUN])],
                textposition=TEXT_POSITION[role],
                textfont=dict(size=ui.PLOT_FONT.get("size", 16) - 2),
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
        )
    base = ui.PLOT_FONT.get("size", 16)
    ticks = latency_ticks(plot[report.LATENCY])
    # Explicit sizes: Streamlit's chart theme otherwise shrinks titles and ticks below projector size.
    fig.update_layout(
        title=dict(text="Accuracy vs. latency: up and to the left is better", font=dict(size=base + 6)),
        font=ui.PLOT_FONT,
        height=600,
        xaxis=dict(
            title=dict(text="Latency for one image (ms, log scale)", font=dict(size=base + 2)),
            type="log",
            tickvals=ticks,
            ticktext=[f"{t:g}" for t in ticks],
            tickfont=dict(size=base),
            range=[math.log10(ticks[0]), math.log10(ticks[-1])] if ticks else None,
        ),
        yaxis=dict(title=dict(text="Test accuracy (%)", font=dict(size=base + 2)), tickfont=dict(size=base)),
        legend=dict(itemsizing="constant", orientation="h", yanchor="top", y=-0.16, x=0, font=dict(size=base)),
        margin=dict(t=90, b=40),
        annotations=[
            dict(
                text="Marker area ∝ number of parameters · open marker = stopped run",
                showarrow=False,
                xref="paper",
                yref="paper",
                x=1,
                y=1.0,
                xanchor="right",
                yanchor="bottom",
                font=dict(size=base - 2, color="#555555"),
            )
        ],
    )
    return fig


def downloads(df, results) -> None:
    left, right = st.columns(2)
    with left:
        st.subheader("The table")
        st.download_button(
            "Download table (CSV)",
            report.to_csv_bytes(df),
            file_name="kd-compare.csv",
            mime="text/csv",
            icon=":material/download:",
        )
    with right:
        st.subheader("A student's weights")
        options = [
            (i, role)
            for i in range(len(results), 0, -1)
            for role in ("distilled", "scratch")
            if role in results[i - 1].students
        ]
        if not options:
            st.caption("These runs kept no student weights.")
            return
        run, role = st.selectbox(
            "Student",
            options,
            format_func=lambda o: (
                report.run_label(o[0], results[o[0] - 1], o[1]) + (" (partial)" if results[o[0] - 1].partial else "")
            ),
        )
        result = results[run - 1]
        meta = {
            "config": json.dumps(result.config.to_dict()),
            "role": role,
            "architecture": result.config.student,
            "partial": str(result.partial),
        }
        st.download_button(
            "Download weights (.safetensors)",
            report.student_weights_bytes(result.students[role], metadata=meta),
            file_name=report.weights_filename(result, role),
            mime="application/octet-stream",
            icon=":material/download:",
        )
        st.caption(
            f"Load them into `kdcore.models.build({result.config.student!r}, {result.config.dataset!r})` "
            "with `safetensors.torch.load_file`."
        )
        onnx_bundle(result, role)


@st.cache_data(show_spinner="Exporting to ONNX…", max_entries=8)
def _bundle(key: str, _result, role: str) -> tuple[bytes, float | None, float | None]:
    """The student's ONNX + safetensors + model card zip, and the ONNX graph's latency when onnxruntime is there."""
    files = export.student_files(_result, role)
    onnx_name = next(name for name in files if name.endswith(".onnx"))
    latency = export.onnx_latency(files[onnx_name], models.image_shape(_result.config.dataset))
    return (
        export.student_bundle_zip(_result, role),
        None if latency is None else latency.ms_batch1,
        None if latency is None else latency.throughput_b256,
    )


def onnx_bundle(result, role: str) -> None:
    try:
        bundle, ms, throughput = _bundle(f"{id(result)}-{role}", result, role)
    except Exception as exc:  # an export failure must not take the page down
        st.error(f"Could not export this student to ONNX ({exc}). The safetensors download above still works.")
        return
    st.download_button(
        "Download as ONNX + model card (.zip)",
        bundle,
        file_name=export.student_name(result, role) + ".zip",
        mime="application/zip",
        icon=":material/deployed_code:",
    )
    if ms is not None:
        row = result.row(role)
        torch_ms = f" (PyTorch: {row.latency_ms_b1:.2f} ms)" if row.latency_ms_b1 else ""
        st.caption(
            f"ONNX Runtime runs this student in **{ms:.3f} ms** per image{torch_ms} and "
            f"{throughput:,.0f} images/s in batches of 256, with the same thread count."
        )


st.title("Compare models")
st.write(
    "Every model your distillation runs trained, side by side: the teachers, their ensemble, and each run's "
    "student trained from scratch and distilled from the ensemble."
)

try:
    results = ui.finished_distill_results()
    active = sum(j.state in ACTIVE for j in ui.my_jobs("distill"))
except Exception as exc:
    st.error(f"Could not read this session's runs ({exc}). Reload the page; if it persists, restart the app.")
    st.stop()

if active:
    st.caption(
        f"⏳ {active} distillation run{'s' if active > 1 else ''} still training; it will appear here when it finishes."
    )
    refresh_when_runs_finish(active)

if not results:
    st.info(
        "No finished distillation yet in this session. Run one on the Distill page: every model it trains "
        "(teachers, ensemble, scratch and distilled student) will appear here."
    )
    try:
        st.page_link("pages/2_Distill.py", label="Go to Distill", icon=":material/arrow_forward:")
    except StreamlitPageNotFoundError:  # the page runs outside the app's navigation (e.g. in tests)
        st.caption("Open **Distill** in the sidebar.")
    st.stop()

try:
    table = report.comparison_table(results)
except Exception as exc:
    st.error(f"Could not build the comparison table ({exc}). Run the distillation again on the Distill page.")
    st.stop()

sentence = report.summary_sentence(table)
if sentence:
    st.markdown(f"**In plain words.** {sentence}")
st.plotly_chart(accuracy_latency_figure(table), width="stretch")
st.caption(
    "The dotted staircase links the models no other model beats on both accuracy and latency. "
    "Latency is measured on this machine's CPU, so compare ratios rather than absolute milliseconds."
)
table_view(table)
downloads(table, results)
