{#
  One column's contract from sources.yml (through the generated macro source_contract), failing the
  compilation when the source or column is not declared or does not carry `rule` (when given), so a
  dbt test can never silently check nothing.
#}
{% macro source_contract_column(source_name, column, rule=none) %}
    {%- set columns = source_contract(source_name)['columns'] -%}
    {%- if column not in columns -%}
        {{ exceptions.raise_compiler_error('sources.yml: source ' ~ source_name ~ ' declares no column ' ~ column) }}
    {%- endif -%}
    {%- if rule and not columns[column][rule] -%}
        {{ exceptions.raise_compiler_error('sources.yml: ' ~ source_name ~ '.' ~ column ~ ' has no ' ~ rule ~ ' rule') }}
    {%- endif -%}
    {{ return(columns[column]) }}
{% endmacro %}
