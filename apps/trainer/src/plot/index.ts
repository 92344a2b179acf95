export { MetricsError, readRunMetrics, type RunMetrics, type TrainRecord, type ValRecord, type RouterRecord } from './metrics.js';
export { plotRuns, renderCharts, runLabels, smooth, type Chart, type ChartId, type PlotOptions } from './charts.js';
