{#
  Run range helpers. Dagster passes start_date and end_date (inclusive, 'YYYY-MM-DD') per run.
  YAML may hand them over as dates or strings, so they are normalised and validated here.
#}

{% macro _range_var(name) -%}
    {%- set value = var(name) | string | trim -%}
    {%- if not modules.re.fullmatch('\d{4}-\d{2}-\d{2}', value) -%}
        {{ exceptions.raise_compiler_error("var '" ~ name ~ "' must be a date 'YYYY-MM-DD', got '" ~ value ~ "'") }}
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
