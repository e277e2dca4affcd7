{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='data_date',
    )
}}

-- The day's published bookings are checked against the day's flights (bookings__flight_exists), so the
-- flights mart of the day is built first, in any run and by automation:
-- depends_on: {{ ref('flights') }}
-- and, with the day's quarantine, against the staged rows (bookings_nothing_lost_between_staging_and_marts, a
-- test of this model), so the quarantine of the day is built first too, also when a backfill splits the build:
-- depends_on: {{ ref('bookings_quarantine') }}

with

validated as (

    select *
    from {{ ref('int_bookings__validated') }}
    where {{ in_run_range('data_date') }}
        and is_valid

)

select
    booking_id,
    flight_id,
    flight_date,
    carrier,
    flight_number,
    origin,
    dest,
    booked_on,
    passenger_name,
    email,
    phone_e164,
    date_of_birth,
    loyalty_number,
    fare_class,
    fare_usd,
    data_date,
    _source_file,
    _batch_id,
    _row_number

from validated
