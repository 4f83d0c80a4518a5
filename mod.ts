/**
 * A differential testing harness for x86 shadow MMUs.
 *
 * This entry point exposes the case format, the reference oracle (an SDM-literal page walker,
 * the TLB allowed-outcome model and a reference machine) and the replay entry point. The shadow
 * MMU under test and the fuzzer build on these.
 *
 * @example Replay a small 4-level case on the oracle
 * ```ts
 * import { parseCase, replayCase } from "./mod.ts";
 * import { equal } from "node:assert/strict";
 *
 * const text = JSON.stringify({
 *   format: "shadow-mmu-case",
 *   version: 1,
 *   cpu: { maxPhyAddr: 46, features: { nx: true, pse: true, pse36: true, gbPages: true,
 *     smep: true, smap: true, pku: true, la57: true, pcid: true } },
 *   control: { cr0: { pg: true, wp: true }, cr3: "0x1000",
 *     cr4: { pse: false, pae: true, pge: false, smep: false, smap: false, pke: false,
 *       la57: false, pcide: false },
 *     efer: { lme: true, nxe: true } },
 *   // PML4[0] -> PDPT 0x2000 -> PD 0x3000 -> PT 0x4000 -> frame 0x5000, user read-only page.
 *   memory: [
 *     { gfn: "0x1", words: { "0": "0x2007" } },
 *     { gfn: "0x2", words: { "0": "0x3007" } },
 *     { gfn: "0x3", words: { "0": "0x4007" } },
 *     { gfn: "0x4", words: { "0": "0x5005" } },
 *   ],
 *   memslots: [{ slot: 0, baseGfn: "0x0", npages: 16 }],
 *   program: [
 *     { op: "load", la: "0x8", cpl: 3 },
 *     { op: "store", la: "0x8", cpl: 3, value: "0x1" },
 *   ],
 * });
 * const loaded = parseCase(text, "example.json");
 * if (!loaded.ok) throw loaded.error;
 * const replay = replayCase(loaded.case);
 * equal(replay.steps[0]!.allowed[0]!.observation.kind, "ok");
 * // A user write to a read-only page: #PF with P, W and U set.
 * equal(JSON.stringify(replay.steps[1]!.allowed[0]!.observation),
 *   '{"kind":"pf","errorCode":"0x7","cr2":"0x8"}');
 * ```
 *
 * @module
 */

export {
  Case,
  CASE_FORMAT,
  CASE_VERSION,
  type CaseJson,
  ControlState,
  CpuModel,
  Memslot,
} from "./src/model/case.ts";
export { Op, OP_KINDS, type OpKind } from "./src/model/op.ts";
export { formatObservation, type Observation } from "./src/model/observation.ts";
export { hex, parseHex64 } from "./src/model/hex.ts";
export { jsonPath } from "./src/model/json_path.ts";
export {
  CaseFileError,
  caseFilesIn,
  type CaseLoad,
  type CaseProblem,
  encodeCase,
  loadCaseFile,
  parseCase,
  validateCase,
} from "./src/corpus/load_case.ts";
export { type CaseReplayJson, replayCase, type ReplayOptions } from "./src/diff/replay.ts";
export {
  type AllowedOutcome,
  type CommittedStep,
  type MachineOptions,
  ReferenceMachine,
  type StepChoices,
} from "./oracles/machine.ts";
export { type Access, walk, type WalkContext, type WalkResult } from "./oracles/walk.ts";
export { type PagingKind, type PagingMode, pagingModeOf } from "./oracles/paging_mode.ts";
export { InitialStateError, type VcpuControl, walkContextOf } from "./oracles/control_state.ts";
