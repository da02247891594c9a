rule transpile:
    """ISA circuit for the backend; layout, calibration snapshot and circuit hash beside it.

    A deployment arm is laid out on the chain its session's selection file chose.
    """
    input:
        circuit=f"{R}/circuits/{{exp}}/{{run}}.qpy",
        selection=ancient(get_selection),
    output:
        isa=f"{R}/isa/{{backend}}/{{exp}}/{{run}}.qpy",
        info=f"{R}/isa/{{backend}}/{{exp}}/{{run}}.json",
    params:
        spec=get_spec,
    log:
        "logs/transpile/{backend}/{exp}/{run}.log",
    run:
        step("transpile", input, output, params, wildcards, log)


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
