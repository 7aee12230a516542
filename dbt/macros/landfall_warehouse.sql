{#
  What differs between warehouses besides JSON access and casts (landfall_helpers.sql):
  the part-file column, recent-partition filters, and the Redshift Spectrum partitions to
  register. Each is dispatched, so a project overrides one piece for its warehouse.
#}

{# The column (or pseudo-column) holding the path of the part file a row came from. #}
{% macro landfall_file_column() %}
  {{- return(adapter.dispatch('landfall_file_column', 'landfall')()) -}}
{% endmacro %}

{# duckdb: read_json_auto(..., filename = true); Snowflake: the generated metadata$filename column #}
{% macro default__landfall_file_column() %}{{ return('filename') }}{% endmacro %}
{% macro bigquery__landfall_file_column() %}{{ return('_FILE_NAME') }}{% endmacro %}
{% macro spark__landfall_file_column() %}{{ return('input_file_name()') }}{% endmacro %}
{% macro databricks__landfall_file_column() %}{{ return('_metadata.file_path') }}{% endmacro %}
{% macro redshift__landfall_file_column() %}{{ return('"$path"') }}{% endmacro %}


{#
  Days of landed partitions the source tests read: var landfall_partition_lookback_days
  (default 3). null, 0 or a negative value: every partition.
#}
{% macro landfall_lookback_days() %}
  {%- set days = var('landfall_partition_lookback_days', 3) -%}
  {%- if days is none or (days | string | trim) in ('', 'none', 'null') or (days | int) <= 0 -%}
    {{ return(none) }}
  {%- endif -%}
  {{ return(days | int) }}
{% endmacro %}


{# SQL predicate: the row's partition date is within the lookback (true when there is none). #}
{% macro landfall_recent_partitions(column='extracted_date') %}
  {%- set days = landfall.landfall_lookback_days() -%}
  {%- if days is none -%}
    {{ return('1 = 1') }}
  {%- endif -%}
  {{ return(column ~ ' >= ' ~ landfall.landfall_days_ago(days)) }}
{% endmacro %}


{# The date `days` days before today (UTC on most warehouses: the session's current_date). #}
{% macro landfall_days_ago(days) %}
  {{- return(adapter.dispatch('landfall_days_ago', 'landfall')(days)) -}}
{% endmacro %}

{% macro default__landfall_days_ago(days) -%}
  {{ return('(current_date - ' ~ (days | int) ~ ')') }}
{%- endmacro %}

{% macro bigquery__landfall_days_ago(days) -%}
  {{ return('date_sub(current_date(), interval ' ~ (days | int) ~ ' day)') }}
{%- endmacro %}

{% macro spark__landfall_days_ago(days) -%}
  {{ return('date_sub(current_date(), ' ~ (days | int) ~ ')') }}
{%- endmacro %}

{% macro databricks__landfall_days_ago(days) -%}
  {{ return('date_sub(current_date(), ' ~ (days | int) ~ ')') }}
{%- endmacro %}


{#
  Partition values `stage_external_sources` registers on Redshift Spectrum (the generated
  `vals`): every date from var landfall_partitions_since (YYYY-MM-DD) to today, or the last
  landfall_partition_lookback_days days (default 3) when it is unset. Registering is
  idempotent (`add if not exists`); a first stage over older data sets
  landfall_partitions_since once.
#}
{% macro landfall_partition_dates() %}
  {%- set today = modules.datetime.datetime.utcnow().date() -%}
  {%- set since = var('landfall_partitions_since', none) -%}
  {%- if since -%}
    {%- set start = modules.datetime.datetime.strptime(since | string, '%Y-%m-%d').date() -%}
  {%- else -%}
    {%- set start = today - modules.datetime.timedelta(days=landfall.landfall_lookback_days() or 3) -%}
  {%- endif -%}
  {%- set dates = [] -%}
  {%- for offset in range((today - start).days + 1) -%}
    {%- do dates.append((start + modules.datetime.timedelta(days=offset)).strftime('%Y-%m-%d')) -%}
  {%- endfor -%}
  {{ return(dates) }}
{% endmacro %}
