import { wgslAttentionPlanner } from '../../plan/wgsl-attention.js';
import { wgslMatmulPlanner } from '../../plan/wgsl-matmul.js';
import type { Target } from '../types.js';

/** The WGSL target (WebGPU): plans and budgets so far; its renderer and runner come next. */
export const wgslTarget: Target = {
  name: 'wgsl',
  title: 'WGSL',
  defaultDevice: 'webgpu',
  planners: { matmul: wgslMatmulPlanner, attention: wgslAttentionPlanner },
};
