"""The quality gate after generation, one test per reason, with the real offline language identifier (langid);
the engine's dtype choice from CPU flags; and the gate's counts in the report. No vLLM here: the gate is checked
on the generate stage's real rows in test_rephrase_run.py."""

from __future__ import annotations

import pytest

from pipelines.engine import BF16_FLAGS, cpu_flags, describe_cpu, resolve_dtype
from pipelines.rephrase import gate, report
from pipelines.rephrase.gate import OutputGate, duplicate_ngram_share, identify_language
from spt.config.rephrase import RephraseQuality, StyleLibrary, StyleSpec

ENGLISH = ("Rivers shape the land they cross. Over thousands of years, moving water carries sand and stones "
           "downstream, cutting valleys into rock and building wide plains where it slows down.")
SPANISH = ("Los ríos dan forma a la tierra que cruzan. Durante miles de años, el agua en movimiento arrastra arena "
           "y piedras río abajo, excavando valles en la roca y formando amplias llanuras.")
STYLE = StyleSpec(description="d", template="{text}", min_length_ratio=0.3, max_length_ratio=2.0)


def judged(text: str, output_tokens: int = 40, input_tokens: int = 50, finish: str = "stop",
           source: str = ENGLISH, **quality) -> str | None:
    stage = OutputGate(RephraseQuality(**quality), {"wiki": STYLE})
    row = {"style": "wiki", "text": text, "output_tokens": output_tokens, "input_tokens": input_tokens,
           "finish_reason": finish, "input_language": stage.source_language(source)}
    return stage.reason(row)


def test_a_faithful_english_rewrite_passes():
    assert judged(ENGLISH) is None


def test_spanish_output_for_an_english_source_is_rejected_for_its_language():
    assert identify_language(ENGLISH, 0.9) == "en" and identify_language(SPANISH, 0.9) == "es"
    assert judged(SPANISH) == gate.LANGUAGE
    assert judged(SPANISH, source=SPANISH) is None  # a Spanish source may have a Spanish rewrite
    # a fixed language: code, whose language cannot be identified, is rephrased into English prose
    assert judged(SPANISH, source="def f(x):\n    return x", language="en") == gate.LANGUAGE
    assert judged(ENGLISH, source="def f(x):\n    return x", language="en") is None
    assert judged(SPANISH, language=None) is None


def test_too_short_to_identify_skips_the_language_check():
    assert judged("Los ríos dan forma.", output_tokens=20) is None  # 4 words < min_language_words


def test_empty_output_is_rejected():
    assert judged("", output_tokens=0) == gate.EMPTY
    assert judged("  \n ", output_tokens=2) == gate.EMPTY


@pytest.mark.parametrize("text", [
    "I'm sorry, but I cannot rewrite this text.", "I cannot help with that request.",
    "As an AI language model, I do not have opinions.", "**Sorry, I am not able to do that.**",
])
def test_refusals_are_rejected(text):
    assert judged(text) == gate.REFUSAL


def test_a_loop_is_rejected_for_repetition():
    loop = "The river carries sand to the sea. " * 6
    assert duplicate_ngram_share(loop, 4) > 0.7
    assert judged(loop) == gate.REPETITION
    assert duplicate_ngram_share(ENGLISH, 4) == 0.0
    assert duplicate_ngram_share("too short", 4) == 0.0


def test_length_ratio_bounds_come_from_the_style():
    assert judged(ENGLISH, output_tokens=101, input_tokens=50) == gate.LENGTH_RATIO  # 2.02 > 2.0
    assert judged(ENGLISH, output_tokens=100, input_tokens=50) is None
    assert judged(ENGLISH, output_tokens=14, input_tokens=50) == gate.LENGTH_RATIO  # 0.28 < 0.3
    # an output cut at its token cap is not too short: the cap, not the model, ended it
    assert judged(ENGLISH, output_tokens=14, input_tokens=50, finish="length") is None


def test_the_first_failing_rule_is_the_reason_and_a_disabled_gate_rejects_nothing():
    assert judged("I'm sorry. " * 10, output_tokens=500) == gate.REFUSAL
    assert judged("", output_tokens=0, enabled=False) is None


def test_bad_quality_settings_are_config_errors():
    with pytest.raises(ValueError, match=r"language='english': must be 'source', a language code"):
        RephraseQuality(language="english")
    with pytest.raises(ValueError, match=r"refusal_patterns\[1\]='\(oops': not a regex"):
        RephraseQuality(refusal_patterns=["sorry", "(oops"])
    with pytest.raises(ValueError, match="min_length_ratio=3 is above max_length_ratio=2"):
        StyleLibrary(kind="styles", styles={"x": StyleSpec(description="d", template="{text}", min_length_ratio=3,
                                                            max_length_ratio=2)})


def test_rejections_are_counted_per_style_and_reason_in_the_report():
    rows = [
        {"style": "wiki", "source_id": "a", "prompt_tokens": 10, "output_tokens": 5, "error": None, "rejected": None},
        {"style": "wiki", "source_id": "b", "prompt_tokens": 10, "output_tokens": 7, "error": None,
         "rejected": gate.LANGUAGE},
        {"style": "qa", "source_id": "a", "prompt_tokens": 10, "output_tokens": 3, "error": None,
         "rejected": gate.REPETITION},
        {"style": "qa", "source_id": "b", "prompt_tokens": 10, "output_tokens": 0, "error": "engine", "rejected": None},
    ]
    unit = {"rows": 4, "errors": 1, "stats": {}, "per_style": report.per_style(rows),
            "rejected_by": report.rejected_by(rows)}
    totals = report.totals([unit, unit])
    assert totals["rejected"] == 4 and totals["accepted_tokens"] == 10
    assert totals["rejected_by"] == {"qa": {"repetition": 2}, "wiki": {"language": 2}}
    assert totals["per_style"]["wiki"]["rejected"] == 2 and totals["per_style"]["wiki"]["accepted_tokens"] == 10
    record = report.run_record([unit], 1.0, 2.0, engine={"dtype": "float32", "cpu": "avx2 yes"})
    summary = report.format_summary(record, totals, 2)
    assert "rejected by the quality gate: qa: repetition 1; wiki: language 1" in summary
    assert "engine: dtype float32; CPU flags: avx2 yes" in summary


def test_dtype_auto_follows_the_device_and_the_cpu_flags(tmp_path):
    assert resolve_dtype("auto", "gpu", set()) == "bfloat16"
    assert resolve_dtype("auto", "cpu", {"avx2", "avx512f"}) == "float32"  # the AVX2-only EPYC case
    for flag in BF16_FLAGS:
        assert resolve_dtype("auto", "cpu", {"avx2", flag}) == "bfloat16"
    assert resolve_dtype("float16", "cpu", {"avx512_bf16"}) == "float16"  # a set dtype is kept
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    assert cpu_flags(str(cpuinfo)) == {"fpu", "sse", "avx2", "avx512f"}
    assert cpu_flags(str(tmp_path / "missing")) == set()
    assert describe_cpu({"avx2"}) == "avx2 yes, avx512f no, avx512_bf16 no, amx_bf16 no"
