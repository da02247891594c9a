rule transpile:
    """ISA circuit for the backend; layout, calibration snapshot and circuit hash beside it."""
    input:
        circuit=f"{R}/circuits/{{exp}}/{{run}}.qpy",
    output:
        isa=f"{R}/isa/{{backend}}/{{exp}}/{{run}}.qpy",
        info=f"{R}/isa/{{backend}}/{{exp}}/{{run}}.json",
    params:
        spec=get_spec,
    log:
        "logs/transpile/{backend}/{exp}/{run}.log",
    conda:
        "../../envs/qpuflow.yaml"
    script:
        "../scripts/transpile.py"
