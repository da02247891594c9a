rule analyze:
    """Decode every collected result: tables with 95% intervals, plots, provenance."""
    input:
        get_collected_results,
    output:
        runs=report(f"{R}/analysis/runs.csv", caption="../report/runs.rst", category="Tables"),
        summary=report(f"{R}/analysis/summary.csv", caption="../report/summary.rst", category="Tables"),
        per_round=report(f"{R}/analysis/per_round.csv", caption="../report/per_round.rst", category="Tables"),
        detection_rounds=report(f"{R}/analysis/detection_rounds.csv", caption="../report/detection_rounds.rst",
                                category="Tables"),
        provenance=report(f"{R}/analysis/provenance.csv", caption="../report/provenance.rst", category="Provenance"),
        error_rates=report(f"{R}/analysis/logical_error_rates.png", caption="../report/error_rates.rst",
                           category="Figures"),
        rounds_plot=report(f"{R}/analysis/detection_rounds.png", caption="../report/rounds_plot.rst",
                           category="Figures"),
        sessions=report(f"{R}/analysis/sessions.csv", caption="../report/sessions.rst", category="Deployment study"),
        session_stats=report(f"{R}/analysis/session_stats.csv", caption="../report/session_stats.rst",
                             category="Deployment study"),
        sessions_plot=report(f"{R}/analysis/sessions.png", caption="../report/sessions_plot.rst",
                             category="Deployment study"),
        overview=report(f"{R}/analysis/overview.html", caption="../report/overview.rst", category="Overview"),
    log:
        "logs/analysis/analyze.log",
    run:
        step("analyze", input, output, params, wildcards, log)


rule dataset:
    """Every completed run as a folder a reviewer re-decodes with stim and PyMatching alone:
    circuits, measurements, detection events, the analysis's DEMs and predictions, metadata,
    a sinter CSV and a manifest with checksums (qpuflow.dataset). Reads the analysis's DEMs,
    so analyze runs first."""
    input:
        runs=f"{R}/analysis/runs.csv",
    output:
        manifest=f"datasets/{STUDY.dataset_name}/manifest.json",
    log:
        "logs/dataset/dataset.log",
    localrule: True
    run:
        step("dataset", input, output, params, wildcards, log)
