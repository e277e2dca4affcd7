{#
  Run range helpers: start_date and end_date (inclusive, 'YYYY-MM-DD') from `--vars` if given, else
  from the environment (PLATFORM_RUN_START_DATE, PLATFORM_RUN_END_DATE: how Dagster passes each run's
  range, since changed --vars make dbt re-parse the whole project while a changed environment variable
  only re-parses the files that read it), else the whole demo year.
  YAML may hand them over as dates or strings, so they are normalised and validated here.
#}

{% macro _range_var(name) -%}
    {%- set default = {'start_date': '2013-01-01', 'end_date': '2013-12-31'}[name] -%}
    {%- set value = var(name, none) or env_var('PLATFORM_RUN_' ~ name | upper, default) -%}
    {%- set value = value | string | trim -%}
    {%- if not modules.re.fullmatch('\d{4}-\d{2}-\d{2}', value) -%}
        {{ exceptions.raise_compiler_error(name ~ " (--vars, or PLATFORM_RUN_" ~ name | upper ~ ") must be a date 'YYYY-MM-DD', got '" ~ value ~ "'") }}
    {%- endif -%}
    {{ return(value) }}
{%- endmacro %}

{% macro range_start() -%}
    {%- set start = _range_var('start_date') -%}
    {%- set end = _range_var('end_date') -%}
    {%- if start > end -%}
        {{ exceptions.raise_compiler_error("start_date " ~ start ~ " is after end_date " ~ end) }}
    {%- endif -%}
    date '{{ start }}'
{%- endmacro %}

{% macro range_end() -%}
    date '{{ _range_var("end_date") }}'
{%- endmacro %}

{# SQL predicate: the column lies in the run range [start_date, end_date]. #}
{% macro in_run_range(column='data_date') -%}
    {{ column }} between {{ range_start() }} and {{ range_end() }}
{%- endmacro %}
