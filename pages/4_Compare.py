"""Compare page: every model this session's distillation runs produced, in one table and an accuracy-latency chart."""

import json

import streamlit as st
from streamlit.errors import StreamlitPageNotFoundError

import charts
import ui
from kdcore import export, glossary, models, report

st.set_page_config(page_title="Compare models · KD Playground", page_icon="⚖️", layout="wide")


@st.fragment(run_every=3)
def refresh_when_runs_finish(active: int) -> None:
    # The table is built once per page run; rerun the page when a training run finishes.
    if sum(j.state in ui.ACTIVE for j in ui.my_jobs("distill")) != active:
        st.rerun()


def table_view(df) -> None:
    shown = df.copy()
    shown[report.MODEL] = [f"⚠ {m} (partial)" if p else m for m, p in zip(df[report.MODEL], df[report.PARTIAL])]
    shown[report.ROLE] = df[report.ROLE].str.capitalize()
    # The model's name says its run and marks a partial one; one dataset needs no Dataset column on screen. The
    # CSV keeps every column.
    hide = (report.RUN, report.PARTIAL) + (() if df[report.DATASET].nunique() > 1 else (report.DATASET,))
    ui.model_table(shown, hide=hide)


def student_weights(results) -> None:
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
    active = sum(j.state in ui.ACTIVE for j in ui.my_jobs("distill"))
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
ui.chart(charts.accuracy_vs_latency(table))
st.caption(
    "The dotted staircase links the models no other model beats on both accuracy and latency. "
    "Latency is measured on this machine's CPU, so compare ratios rather than absolute milliseconds."
)
st.subheader("The table", help=glossary.tooltip("latency", "agreement", "ECE"))
table_view(table)
st.download_button(
    "Download table (CSV)",
    report.to_csv_bytes(table),
    file_name="kd-compare.csv",
    mime="text/csv",
    icon=":material/download:",
)
student_weights(results)
