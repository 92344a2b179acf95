export { exportHuggingFace, loadHuggingFaceModel, writeExportReference, modelFromSnapshot, type HfExportOptions } from './hf-export.js';
