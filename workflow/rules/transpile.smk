rule transpile:
    """ISA circuit for the backend; layout, calibration snapshot and circuit hash beside it.

    Builds the logical circuit (results/circuits/, rule circuit) first if it is not there: one
    job per run instead of two, and no per-run input file for Snakemake's scheduler to stat
    on every round (it does that for every ready job: O(N^2) at thousands of runs).
    A deployment arm is laid out on the chain its session's selection file chose.
    """
    input:
        selection=ancient(get_selection),
    output:
        isa=f"{R}/isa/{{backend}}/{{exp}}/{{run}}.qpy",
        info=f"{R}/isa/{{backend}}/{{exp}}/{{run}}.json",
    params:
        spec=get_spec,
        circuit=get_circuit_path,
    log:
        "logs/transpile/{backend}/{exp}/{run}.log",
    run:
        step("transpile", input, output, params, wildcards, log)


rule transpile_batch:
    """Build, transpile and check (noiseless preflight) every run of one pending batch.

    One Snakemake job per batch (see submit_batch), not per run: ISA files (and their .json records) are
    written by the library in place, those already there kept; the manifest lists them with
    their hashes. (The per-run `transpile` rule makes the same files on explicit request.)
    """
    input:
        selection=ancient(get_batch_selection),
        precheck=f"{R}/ledger/budget_prechecked.flag",
    output:
        manifest=temp(f"{R}/batches/{{exp}}/{{batch}}.transpiled.json"),
    params:
        specs=get_batch_specs,
    log:
        "logs/transpile/{exp}/{batch}.log",
    run:
        step("transpile_batch", input, output, params, wildcards, log)


rule select_qubits:
    """Choose each arm's chain for one deployment session, now, and fix the arms' order.

    calibration: from the backend's reported calibration; drift_aware: from the session's
    collected probe job (the second async boundary: this rule is only asked for once the
    probe's result exists, see sessions.py).
    """
    input:
        unpack(get_selection_inputs),
    output:
        selection=f"{R}/selection/{{exp}}/session{{session}}.json",
    log:
        "logs/selection/{exp}/session{session}.log",
    localrule: True
    run:
        step("select_qubits", input, output, params, wildcards, log)
