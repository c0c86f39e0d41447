/** kgen's library API; the `kgen` CLI is a thin layer over these. */
export { emit } from './api/emit.js';
export type { EmitOptions, EmitResult, Manifest, ConfigSource } from './api/emit.js';
export { verify } from './api/verify.js';
export type { VerifyOptions, VerifyResult } from './api/verify.js';
export { TestDataCache } from './ops/test-data-cache.js';
export type { TestData } from './ops/types.js';
export { pack } from './api/pack.js';
export type { PackOptions, PackResult } from './api/pack.js';
export { packedSidecar, checkPacked, sidecarPath } from './api/packed-file.js';
export type { PackedSidecar, PackedWeights, RawDescription } from './api/packed-file.js';
export type { KernelRequest } from './api/request.js';
export { makePlan, spaceFor, enumerateConfigs, defaultConfig } from './plan/index.js';
export { planRequest, targetNames, targetFor } from './backends/registry.js';
export type {
  Target, Backend, RenderedKernel, KernelRunner, AbiEntry, BindingInterface, Fingerprint, TrialStatus,
  BackendCapabilities, TargetVariants, Renderers, RenderContext, ResourceReport, DeviceNeed, WgslPass,
  KernelInputs, BuildFlag, BuildOptions, KernelBuild, KernelExecution, Timing, TimingOptions, ReadProbeTiming,
  PackagedKernel, PackageContext, PackageBuild, WorkloadInfo, RunResultImport, RunImportContext, ImportedRun,
} from './backends/types.js';
export type { TensorInfo, WeightsInfo } from './ops/index.js';
export { openTuningDb } from './db/sqlite.js';
export type { OpenOptions as OpenTuningDbOptions } from './db/sqlite.js';
export type { TuningDb, Workload, WorkloadSummary, WorkloadFilter, Trial, TrialRow, TrialTiming, Exchange, ImportSummary } from './db/types.js';
export type {
  Plan, Config, Knob, SearchSpace, BudgetCheck, PlanRequest, ConfigValue, Restriction, LaunchShape, MemorySpace, OnChipBuffer,
  PlanBody, PlanFamily, PlanFamilies, FamilyTypes, PlanFamilyTypes, PlanOf, PlanRequestOf, PlanRequestFor, Planner, PlannerOf,
} from './plan/types.js';
export type { CpuMatmulParams, CpuVariants } from './plan/cpu-matmul.js';
export type { ResolvedPlan } from './plan/index.js';
export { allDevices, getDevice, detectPresence, detectGpus, matchGpuProfile } from './device/index.js';
export { forcedHost } from './device/host.js';
export type { ForcedHostOptions, HostOptions } from './device/host.js';
export type { DeviceOptions, Presence } from './device/index.js';
export type { GpuInfo, GpuDetection, GpuMatch, DetectGpusOptions } from './device/gpu.js';
export type { DeviceProfile, TargetName, CpuLimits, GpuLimits, GpuFeatures, PresenceProbe } from './device/profile.js';
export { CATALOG } from './ir/catalog.js';
export { validateOp, parseShape, opHash } from './ir/validate.js';
export type {
  Op, OpKind, MatmulOp, AttentionOp, Shape, MatmulShape, AttentionShape, MatmulDim, AttentionDim, Epilogue, EpilogueActivation,
  ActDType, KvCacheFormat, KvLayout, WeightFormatName, WeightSpec,
} from './ir/types.js';
export { FORMATS, quantizeMatrix, dequantizeMatrix, bitsPerWeight } from './quant/index.js';
export type { WeightFormat, BlockCodec } from './quant/index.js';
export { referenceMatmul, referenceMatmulWithTerms } from './reference/matmul.js';
export type { MatmulReferenceInputs } from './reference/matmul.js';
export { compareOutputs, withinTolerance } from './reference/compare.js';
export type { Comparison, CompareOptions, Tolerance, InputRounding } from './reference/compare.js';
export { referenceAttention } from './reference/attention.js';
export type { AttentionReferenceInputs, KvStored } from './reference/attention.js';
export { KgenError, BudgetError, ToolMissingError, InternalError } from './errors.js';
export type { CommentText } from './render/comment-text.js';
