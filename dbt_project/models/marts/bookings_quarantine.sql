{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='data_date',
    )
}}

with

rejected as (

    select *
    from {{ ref('int_bookings__validated') }}
    where {{ in_run_range('data_date') }}
        and not is_valid

)

select
    rejection_rule,
    rejection_reason,
    booking_id,
    booked_on,
    flight_date_raw,
    flight_date,
    carrier,
    flight_number_raw,
    origin,
    dest,
    passenger_name,
    email_raw,
    phone_raw,
    date_of_birth,
    loyalty_number,
    fare_class,
    fare_usd,
    data_date,
    _source_file,
    _batch_id,
    _row_number

from rejected
