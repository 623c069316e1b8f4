// The dashboard JSON model of @grafana/schema, as JSON: Grafana's TypeScript types use
// enums (MappingType.ValueToText), while a dashboard file holds their string values
// ("value"). Json<T> turns every enum into the union of its values and keeps everything
// else, so a dashboard file type-checks against the same interfaces Grafana's UI uses,
// with excess-property checks (a misspelt field is an error).
import type {
  AnnotationQuery,
  DataQuery,
  Dashboard,
  Panel,
  RowPanel,
  VariableModel,
} from '@grafana/schema';

export type Json<T> = T extends string
  ? `${T}`
  : T extends (infer U)[]
    ? Json<U>[]
    : T extends object
      ? { [K in keyof T]: Json<T[K]> }
      : T;

// Query fields belong to each datasource's plugin, not to the generic DataQuery:
// these are the Prometheus and InfluxDB (InfluxQL) ones vigia uses.
export type Target = Json<DataQuery> & {
  expr?: string;
  legendFormat?: string;
  instant?: boolean;
  range?: boolean;
  format?: 'time_series' | 'table' | 'heatmap';
  query?: string;
  rawQuery?: boolean;
  resultFormat?: 'time_series' | 'table' | 'logs';
  alias?: string;
};

export type PanelJson = Omit<Json<Panel>, 'targets'> & { targets?: Target[] };
export type RowJson = Omit<Json<RowPanel>, 'panels'> & { panels: PanelJson[] };
// `definition` is the query text Grafana's variable editor shows; not in the schema.
export type VariableJson = Json<VariableModel> & { definition?: string };

export type AnnotationJson = Omit<Json<AnnotationQuery>, 'target'> & { target?: Target };

export type DashboardJson = Omit<Json<Dashboard>, 'panels' | 'templating' | 'annotations'> & {
  annotations?: { list?: AnnotationJson[] };
  panels?: Array<PanelJson | RowJson>;
  templating?: { list?: VariableJson[] };
};
