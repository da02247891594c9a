"""The emulator's job runner: a separate process that moves jobs through their states.

Started (and restarted if it dies) by the HTTP server; it exits when the server closes its
stdin. Every ``poll_seconds`` it looks at the pending jobs in the shared SQLite store and

* decodes a new job's payload (SamplerV2 ``sampler`` or client-side ``executor``), checks
  every instruction against the backend's Target (error 1517 if not ISA), and records the
  circuit summary and the usage estimate;
* Queued -> Running once ``queue_seconds`` have passed since creation (a job waits while its
  instance has used up its usage limit, as on the service);
* simulates it with :func:`qpuflow.simulate.sample_isa` on the fake backend's noise
  (``ibm_fez`` -> ``fake_fez``) and stores the result in the runtime's JSON encoding;
* Running -> Completed (or the Failed/Cancelled outcome a fault planned, or Cancelled with
  reason code 1305 when the usage exceeds ``max_execution_time``) once ``run_seconds`` have
  passed since it started running.

Usage is deterministic: ``ceil(estimate_qpu_seconds(shots, circuit duration))`` per job.
Random seeds derive from the job id, so a job re-run after a restart gives the same counts.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import sys
import threading
import time
import traceback
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from qpuflow.emulator.store import InstanceRegistry, JobStore

UNSUPPORTED = 1517  # the service's code for "instruction not supported / invalid input"
INTERNAL = 1500
RAN_TOO_LONG = 1305


class JobError(Exception):
    """The job cannot run; becomes ``Failed`` with this reason code and message."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclasses.dataclass
class Unit:
    """One circuit to sample at one or more parameter bindings (a pub or an executor item)."""

    circuit: Any
    bindings: Any  # qiskit BindingsArray (sampler) or ndarray (*shape, n_params) (executor)
    shape: tuple[int, ...]
    shots: int
    extra_data: dict[str, Any] | None = None  # executor samplex outputs returned with the results


@dataclasses.dataclass
class Prepared:
    program: str
    units: list[Unit]
    info: dict[str, Any]
    estimate: float
    usage: float
    extra: dict[str, Any]


class Worker:
    def __init__(self, store: Path, settings: dict[str, Any]):
        self.store = JobStore(store)
        self.instances = InstanceRegistry(store)
        self.settings = settings
        self.backends: dict[str, str] = settings.get("backends", {})
        self.poll = float(settings.get("poll_seconds", 0.05))
        self.stop = threading.Event()
        self.wake = threading.Event()  # set by the server (a line on stdin) when a job arrives
        self._prepared: dict[str, Prepared] = {}
        self._usage_cache: dict[str, float] = {}

    # ---------------------------------------------------------------- main loop

    def run(self) -> None:
        threading.Thread(target=self._lifeline, daemon=True).start()
        self._warm()
        while not self.stop.is_set():
            self._usage_cache = {}
            try:
                pending = self.store.pending()
                live = {job["id"] for job in pending}
                for job_id in [k for k in self._prepared if k not in live]:  # cancelled meanwhile
                    del self._prepared[job_id]
                for job in pending:
                    if self.stop.is_set():
                        break
                    try:
                        self.step(job)
                    except Exception:  # never let one job stop the others
                        _log(f"job {job['id']}: unexpected error\n{traceback.format_exc()}")
                        self.store.finish(job["id"], "Failed", now=time.time(), reason_code=INTERNAL,
                                          reason="Internal error in the emulator worker", usage_seconds=0.0)
                        self._prepared.pop(job["id"], None)
            except Exception:
                _log(f"worker loop error\n{traceback.format_exc()}")
            self.wake.wait(self.poll)
            self.wake.clear()
        self.store.close()

    def _lifeline(self) -> None:
        """stdin is the server: a line means "look now", end of file means "exit"."""
        try:
            while sys.stdin.buffer.readline():
                self.wake.set()
        except (OSError, ValueError):
            pass
        self.stop.set()
        self.wake.set()

    def _warm(self) -> None:
        for fake in self.backends.values():
            try:
                self._backend_obj(fake)
            except Exception as exc:  # reported per job later
                _log(f"could not load {fake}: {exc}")

    @staticmethod
    def _backend_obj(fake: str):
        from qpuflow.backends import load_backend

        return load_backend(fake)

    # ---------------------------------------------------------------- one job

    def step(self, job: dict[str, Any]) -> None:
        job_id = job["id"]
        now = time.time()
        prepared = self._prepared.get(job_id)
        if prepared is None:
            try:
                prepared = self.prepare(job)
            except JobError as exc:
                self.store.finish(job_id, "Failed", now=now, reason=exc.message, reason_code=exc.code,
                                  usage_seconds=0.0)
                return
            self._prepared[job_id] = prepared
            if job["info"] is None:
                self.store.set_info(job_id, prepared.info, prepared.estimate)
        if job["status"] == "Queued":
            if now < job["created"] + job["queue_seconds"] or self._over_limit(job["instance"], now):
                return
            if not self.store.start(job_id, now):
                self._forget_if_final(job_id)
                return
            job = dict(job, status="Running", running=now)
        if job["status"] != "Running":
            return
        planned = job.get("planned")
        if planned is None and not self.store.has_result(job_id):
            try:
                text = self.execute(job, prepared)
            except JobError as exc:
                self.store.finish(job_id, "Failed", now=time.time(), reason=exc.message, reason_code=exc.code,
                                  usage_seconds=0.0, from_states=("Running",))
                self._prepared.pop(job_id, None)
                return
            self.store.put_result(job_id, text)
        if time.time() < job["running"] + job["run_seconds"]:
            return
        finished = time.time()
        if planned is not None:
            self.store.finish(job_id, planned["status"], now=finished, reason=planned.get("reason"),
                              reason_code=planned.get("reason_code"), usage_seconds=0.0, from_states=("Running",))
        elif (self.settings.get("enforce_max_execution_time", True) and job.get("cost")
              and prepared.usage > job["cost"]):
            self.store.finish(
                job_id, "Cancelled", now=finished, reason_code=RAN_TOO_LONG, usage_seconds=float(job["cost"]),
                reason=(f"Job ran longer than its maximum execution time of {job['cost']} s "
                        f"(it needs about {prepared.usage:.0f} s); raise max_execution_time"),
                from_states=("Running",))
        elif self.store.finish(job_id, "Completed", now=finished, usage_seconds=prepared.usage,
                               from_states=("Running",)) and job["instance"] in self._usage_cache:
            self._usage_cache[job["instance"]] += prepared.usage
        self._prepared.pop(job_id, None)

    def _forget_if_final(self, job_id: str) -> None:
        current = self.store.get(job_id)
        if current is None or current["status"] not in ("Queued", "Running"):
            self._prepared.pop(job_id, None)

    def _over_limit(self, crn: str, now: float) -> bool:
        inst = self.instances.by_crn(crn)
        limit = None if inst is None else inst.get("usage_limit_seconds")
        if limit is None:
            return False
        if crn not in self._usage_cache:  # once per pass over the pending jobs
            since = now - float(self.settings.get("usage_window_days", 28)) * 86400
            self._usage_cache[crn] = self.store.usage(crn, since=since)
        return self._usage_cache[crn] >= limit

    # ---------------------------------------------------------------- decoding and checks

    def prepare(self, job: dict[str, Any]) -> Prepared:
        fake = self.backends.get(job["backend"])
        if fake is None:
            raise JobError(INTERNAL, f"backend {job['backend']} is not served by this emulator")
        backend = self._backend_obj(fake)
        params_text = self.store.params(job["id"]) or "{}"
        if job["program_id"] == "sampler":
            units, rep_delay, extra = _decode_sampler(params_text)
        elif job["program_id"] == "executor":
            units, rep_delay, extra = _decode_executor(params_text, job["id"])
        else:
            raise JobError(UNSUPPORTED, f"program {job['program_id']} is not supported")
        for unit in units:
            _check_isa(unit.circuit, backend, job["backend"])
        return _estimate(job["program_id"], units, backend, rep_delay, extra)

    # ---------------------------------------------------------------- execution

    def execute(self, job: dict[str, Any], prepared: Prepared) -> str:
        backend = self._backend_obj(self.backends[job["backend"]])
        start = datetime.now(timezone.utc)
        arrays = [self._sample_unit(job["id"], i, unit, backend) for i, unit in enumerate(prepared.units)]
        stop = datetime.now(timezone.utc)
        if prepared.program == "sampler":
            return _encode_sampler(prepared, arrays, start, stop)
        return _encode_executor(prepared, arrays, start, stop)

    def _sample_unit(self, job_id: str, index: int, unit: Unit, backend) -> dict[str, Any]:
        import numpy as np

        from qpuflow.simulate import sample_isa

        cregs = [(c.name, c.size) for c in unit.circuit.cregs]
        out = {name: np.zeros((*unit.shape, unit.shots, size), dtype=bool) for name, size in cregs}
        base_seed = self.settings.get("seed")
        for k, loc in enumerate(np.ndindex(unit.shape) if unit.shape else [()]):
            circuit = _bind(unit, loc)
            seed = _seed(base_seed, job_id, index, k)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    regs = sample_isa(circuit, backend, shots=unit.shots, seed=seed,
                                      noise_scale=float(self.settings.get("noise_scale", 1.0)),
                                      idle_noise=bool(self.settings.get("idle_noise", True)))
            except Exception as exc:
                raise JobError(INTERNAL, f"the circuit could not be executed: {type(exc).__name__}: {exc}") from None
            for name, _ in cregs:
                out[name][loc] = regs[name]
        return out


# --------------------------------------------------------------------------------------
# payloads
# --------------------------------------------------------------------------------------


def _decode_sampler(params_text: str) -> tuple[list[Unit], float | None, dict[str, Any]]:
    from qiskit.primitives.containers.sampler_pub import SamplerPub
    from qiskit_ibm_runtime import RuntimeDecoder

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            params = json.loads(params_text, cls=RuntimeDecoder)
    except Exception as exc:
        raise JobError(UNSUPPORTED, f"the job payload could not be decoded: {type(exc).__name__}: {exc}") from None
    options = params.get("options") or {}
    execution = options.get("execution") or {}
    meas_type = execution.get("meas_type", "classified")
    if meas_type != "classified":
        raise JobError(UNSUPPORTED, f"meas_type {meas_type!r} is not supported by the emulator (only 'classified')")
    default_shots = options.get("default_shots") or 4096
    units = []
    for raw in params.get("pubs") or []:
        try:
            items = list(raw) if isinstance(raw, (list, tuple)) else [raw]
            if len(items) >= 3 and items[2] is None:
                items = items[:2]
            pub = SamplerPub.coerce(tuple(items) if len(items) > 1 else items[0], default_shots)
        except Exception as exc:
            raise JobError(UNSUPPORTED, f"invalid pub: {type(exc).__name__}: {exc}") from None
        units.append(Unit(circuit=pub.circuit, bindings=pub.parameter_values, shape=tuple(pub.shape),
                          shots=int(pub.shots)))
    if not units:
        raise JobError(UNSUPPORTED, "the job has no pubs")
    rep = execution.get("rep_delay")
    return units, (float(rep) if rep is not None else None), {"version": params.get("version", 2)}


def _decode_executor(params_text: str, job_id: str) -> tuple[list[Unit], float | None, dict[str, Any]]:
    import numpy as np

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from ibm_quantum_schemas.executor.version_2_0 import ParamsModel
            from samplomatic.quantum_program import CircuitItem

            from qiskit_ibm_runtime.quantum_program.converters.converters_2_0 import quantum_program_from_2_0

            raw = json.loads(params_text)
            version = raw.get("schema_version")
            if version != "v2.0":
                raise JobError(UNSUPPORTED, f"executor schema {version!r} is not supported (only v2.0)")
            model = ParamsModel.model_validate(raw)
            program, options = quantum_program_from_2_0(model)
    except JobError:
        raise
    except Exception as exc:
        raise JobError(UNSUPPORTED, f"the executor payload could not be decoded: {type(exc).__name__}: {exc}") from None
    if program.meas_level != "classified":
        raise JobError(UNSUPPORTED, f"meas_level {program.meas_level!r} is not supported (only 'classified')")
    units = []
    for index, item in enumerate(program.items):
        extra_data = None
        if isinstance(item, CircuitItem):
            args = np.asarray(item.circuit_arguments) if item.circuit_arguments is not None else np.zeros((0,))
        else:  # a samplex item (twirling): draw the randomizations as the service would
            try:
                from qiskit_ibm_runtime.fake_provider.executor.broadcast_sample import broadcast_sample

                rng = np.random.default_rng(_seed(None, job_id, index, -1))
                samplex = item.samplex
                if not getattr(samplex, "_finalized", True):
                    samplex.finalize()
                extra_data = broadcast_sample(samplex, item.samplex_arguments, item.shape, rng)
                args = np.asarray(extra_data.pop("parameter_values"))
            except Exception as exc:
                raise JobError(UNSUPPORTED, f"samplex item {index} could not be sampled: "
                                            f"{type(exc).__name__}: {exc}") from None
        shape = tuple(args.shape[:-1]) if args.ndim >= 1 else ()
        units.append(Unit(circuit=item.circuit, bindings=args, shape=shape, shots=int(program.shots),
                          extra_data=extra_data))
    rep = options.execution.rep_delay
    extra = {"passthrough_data": raw["quantum_program"].get("passthrough_data"),
             "semantic_role": raw["quantum_program"].get("semantic_role")}
    return units, (float(rep) if rep is not None else None), extra


def _bind(unit: Unit, loc: tuple[int, ...]):
    circuit = unit.circuit
    if not circuit.parameters:
        return circuit
    if hasattr(unit.bindings, "bind"):
        return unit.bindings.bind(circuit, loc)
    values = unit.bindings[loc]
    return circuit.assign_parameters(dict(zip(circuit.parameters, values)))


def _seed(base: int | None, job_id: str, index: int, k: int) -> int:
    text = f"{base}:{job_id}:{index}:{k}" if base is not None else f"{job_id}:{index}:{k}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")


def _check_isa(circuit, backend, name: str) -> None:
    target = backend.target
    if circuit.num_qubits > target.num_qubits:
        raise JobError(UNSUPPORTED, f"the circuit has {circuit.num_qubits} qubits but {name} has {target.num_qubits}")
    index = {q: i for i, q in enumerate(circuit.qubits)}
    for inst in circuit.data:
        op = inst.operation
        if op.name == "barrier":
            continue
        qargs = tuple(index[q] for q in inst.qubits)
        if not target.instruction_supported(operation_name=op.name, qargs=qargs):
            raise JobError(UNSUPPORTED, f"The instruction {op.name} on qubits {qargs} is not supported by the "
                                        f"target system {name}. Transpile the circuit for {name} (ISA) first.")


def _estimate(program: str, units: list[Unit], backend, rep_delay: float | None, extra: dict[str, Any]) -> Prepared:
    import qiskit

    from qpuflow.budget import DEFAULT_REP_DELAY_SECONDS, JOB_OVERHEAD_SECONDS, estimate_qpu_seconds
    from qpuflow.circuit_identity import isa_summary
    from qpuflow.transpile import active_qubits

    rep = DEFAULT_REP_DELAY_SECONDS if rep_delay is None else rep_delay
    total = JOB_OVERHEAD_SECONDS
    depths, qubits, durations, executions = [], [], [], 0
    for unit in units:
        duration = isa_summary(unit.circuit)["duration_seconds"]
        if duration is None:
            try:
                duration = isa_summary(unit.circuit, backend)["duration_seconds"]
            except Exception:
                duration = None
        n = unit.shots * max(1, math.prod(unit.shape))
        executions += n
        total += estimate_qpu_seconds(shots=n, circuit_duration=duration, rep_delay=rep, overhead=0.0)
        depths.append(unit.circuit.depth())
        qubits.append(len(active_qubits(unit.circuit)))
        durations.append(duration)
    estimate = round(total, 2)
    info = {"num_circuits": len(units), "circuit_depths": depths, "num_qubits": qubits,
            "durations": durations, "shots": [u.shots for u in units], "executions": executions,
            "qiskit_version": qiskit.__version__, "usage_seconds": math.ceil(estimate)}
    return Prepared(program=program, units=units, info=info, estimate=estimate, usage=float(math.ceil(estimate)),
                    extra=extra)


def _encode_sampler(prepared: Prepared, arrays: list[dict[str, Any]], start: datetime, stop: datetime) -> str:
    from qiskit.primitives import PrimitiveResult, SamplerPubResult
    from qiskit.primitives.containers import BitArray, DataBin
    from qiskit_ibm_runtime import RuntimeEncoder
    from qiskit_ibm_runtime.execution_span import DoubleSliceSpan, ExecutionSpans

    pub_results, slices = [], {}
    for i, (unit, regs) in enumerate(zip(prepared.units, arrays)):
        data = DataBin(**{name: BitArray.from_bool_array(arr, order="little") for name, arr in regs.items()},
                       shape=unit.shape)
        pub_results.append(SamplerPubResult(data=data, metadata={"circuit_metadata": unit.circuit.metadata or {}}))
        n = max(1, math.prod(unit.shape))
        slices[i] = ((n, unit.shots), slice(0, n), slice(0, unit.shots))
    spans = ExecutionSpans([DoubleSliceSpan(start, stop, slices)])
    result = PrimitiveResult(pub_results, metadata={"execution": {"execution_spans": spans},
                                                    "version": prepared.extra.get("version", 2)})
    return json.dumps(result, cls=RuntimeEncoder)


def _encode_executor(prepared: Prepared, arrays: list[dict[str, Any]], start: datetime, stop: datetime) -> str:
    import numpy as np
    from ibm_quantum_schemas.common import CompressedTensorModel
    from ibm_quantum_schemas.executor.version_2_0 import QuantumProgramResultModel

    data = []
    for unit, regs in zip(prepared.units, arrays):
        tensors = {**(unit.extra_data or {}), **regs}
        data.append({"results": {name: CompressedTensorModel.from_numpy(np.asarray(arr)).model_dump(mode="json")
                                 for name, arr in tensors.items()}, "metadata": {}})
    parts = []
    for i, unit in enumerate(prepared.units):
        size = max(1, math.prod(unit.shape))
        parts.append({"idx_item": i, "size": size, "permutation": list(range(len(unit.shape))),
                      "element_range": (0, size, 1)})
    model = QuantumProgramResultModel.model_validate({
        "schema_version": "v2.0",
        "data": data,
        "metadata": {"chunk_timing": [{"start": start.isoformat(), "stop": stop.isoformat(), "parts": parts}]},
        "passthrough_data": prepared.extra.get("passthrough_data"),
        "semantic_role": prepared.extra.get("semantic_role"),
    })
    return model.model_dump_json()


def _log(message: str) -> None:
    sys.stderr.write(f"[emulator-worker {datetime.now(timezone.utc).isoformat()}] {message}\n")
    sys.stderr.flush()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="qpuflow IBM emulator job worker (started by the server)")
    parser.add_argument("--store", required=True, type=Path)
    parser.add_argument("--settings", default="{}")
    args = parser.parse_args(argv)
    Worker(args.store, json.loads(args.settings)).run()


if __name__ == "__main__":
    main()
