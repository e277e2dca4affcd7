{#
  Returns a SELECT of the raw rows whose _data_date satisfies `date_predicate` and that belong to
  the most recently ingested batch (_batch_id, by _ingested_at) of their _data_date.

  Defensive de-duplication of deliveries: should a raw table ever hold more than one ingestion
  batch for the same _data_date (a re-delivery appended instead of replacing the day), only the
  latest one is current. When every day has one batch this is a no-op.
#}
{% macro select_current_batch(source_relation, date_predicate) -%}
    select raw_rows.*
    from (select * from {{ source_relation }} where {{ date_predicate }}) as raw_rows
    where exists (
        select 1
        from (
            -- the batches of each day, latest first (few rows: one per day and batch)
            select
                _data_date,
                _batch_id,
                row_number() over (
                    partition by _data_date
                    order by max(_ingested_at) desc nulls last, _batch_id desc nulls last
                ) as recency
            from {{ source_relation }}
            where {{ date_predicate }}
            group by _data_date, _batch_id
        ) as current_batches
        where current_batches.recency = 1
            and raw_rows._data_date = current_batches._data_date
            and {{ equal_or_both_null('raw_rows._batch_id', 'current_batches._batch_id') }}
    )
{%- endmacro %}


{#
  Reference tables (planes, airports, airlines) arrive as a full snapshot when they change. Select the
  latest snapshot delivered on or before end_date (falling back to the earliest snapshot when the
  run range precedes every delivery), and within it the latest batch.
#}
{% macro select_reference_snapshot(source_relation) -%}
    {%- set snapshot_date -%}
        (
            select coalesce(
                max(_data_date) filter (where _data_date <= {{ range_end() }}),
                min(_data_date)
            )
            from {{ source_relation }}
        )
    {%- endset -%}
    {{ select_current_batch(source_relation, '_data_date = ' ~ snapshot_date) }}
{%- endmacro %}
