{#
  Data tests can be limited to the rows of the current run with `config: where: "__run_range__"`:
  the placeholder becomes "data_date between <start_date> and <end_date>". A daily run then checks
  the day it rebuilt (and reports counts for that day) instead of rescanning all history.
  `__relation__` stands for the tested table itself (used to check the run's keys against all days).
  Keys that must be unique across all days are tested without a where, or with one built from
  __relation__ that still compares against every day.
#}
{% macro get_where_subquery(relation) -%}
    {%- set where = config.get('where') -%}
    {%- if where -%}
        {%- set where = where
            | replace('__run_range__', in_run_range('data_date'))
            | replace('__relation__', relation | string) -%}
        {%- set filtered -%}
            (select * from {{ relation }} where {{ where }}) dbt_subquery
        {%- endset -%}
        {%- do return(filtered) -%}
    {%- else -%}
        {%- do return(relation) -%}
    {%- endif -%}
{%- endmacro %}
