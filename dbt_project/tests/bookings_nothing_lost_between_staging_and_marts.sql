{{
    config(
        meta={'dagster': {'ref': {'name': 'bookings'}}},
    )
}}

{#
  Nothing is lost between staging and the marts: for every delivery date of the run range that
  the marts hold, staged rows = valid bookings + quarantined bookings + verbatim retry copies.
  Returns one row per data_date whose counts do not add up.
#}

with

staged as (

    select
        data_date,
        count(*) as staged_rows,
        count(*) filter (where is_retry_duplicate) as retry_copies
    from {{ ref('stg_bookings__bookings') }}
    where {{ in_run_range('data_date') }}
    group by data_date

),

valid as (

    select data_date, count(*) as valid_rows
    from {{ ref('bookings') }}
    where {{ in_run_range('data_date') }}
    group by data_date

),

quarantined as (

    select data_date, count(*) as quarantined_rows
    from {{ ref('bookings_quarantine') }}
    where {{ in_run_range('data_date') }}
    group by data_date

),

compared as (

    select
        coalesce(staged.data_date, valid.data_date, quarantined.data_date) as data_date,
        coalesce(staged.staged_rows, 0) as staged_rows,
        coalesce(staged.retry_copies, 0) as retry_copies,
        coalesce(valid.valid_rows, 0) as valid_rows,
        coalesce(quarantined.quarantined_rows, 0) as quarantined_rows,
        valid.data_date is not null or quarantined.data_date is not null as in_marts
    from staged
    full outer join valid on staged.data_date = valid.data_date
    full outer join quarantined
        on coalesce(staged.data_date, valid.data_date) = quarantined.data_date

)

select *
from compared
where in_marts
    and staged_rows != valid_rows + quarantined_rows + retry_copies
