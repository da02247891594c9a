rule circuit:
    """Logical circuit of one run from stim's generators, with its measurement map."""
    output:
        circuit=f"{R}/circuits/{{exp}}/{{run}}.qpy",
    params:
        spec=get_spec,
    log:
        "logs/circuits/{exp}/{run}.log",
    run:
        step("build_circuit", input, output, params, wildcards, log)
