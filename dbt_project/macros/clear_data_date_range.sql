{#
  Pre-hook of every model (set in dbt_project.yml). For an incremental model that already exists,
  delete all rows whose data_date is in the run range before the new rows are inserted.

  delete+insert on unique_key data_date alone only replaces the data_date values that the new
  batch contains; a day whose rebuilt output is empty (for example a quarantine day whose last
  rejected booking became valid) would keep stale rows. Clearing the whole range makes a re-run of
  any range replace it exactly. Runs inside the model's transaction.
#}
{% macro clear_data_date_range() -%}
    {%- if model.config.materialized == 'incremental' and is_incremental() -%}
        delete from {{ this }} where {{ in_run_range('data_date') }}
    {%- endif -%}
{%- endmacro %}
