{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='data_date',
    )
}}

{#- Every column of the bookings export as delivered (lineage columns excluded). -#}
{%- set delivered_columns = [
    'booking_id', 'booked_on', 'flight_date', 'carrier', 'flight_number', 'origin', 'dest',
    'passenger_name', 'email', 'phone', 'date_of_birth', 'loyalty_number', 'fare_class', 'fare_usd',
] -%}

with

source as (

    {{ select_current_batch(source('raw', 'bookings'), in_run_range('_data_date')) }}

),

typed as (

    select
        nullif(trim(booking_id), '') as booking_id,
        try_strptime(trim(booked_on), '%Y-%m-%d')::date as booked_on,
        -- documented source defect: YYYY-MM-DD until 2013-06-30, MM-DD-YYYY from 2013-07-01
        case
            when regexp_full_match(trim(flight_date), '\d{4}-\d{1,2}-\d{1,2}')
                then try_strptime(trim(flight_date), '%Y-%m-%d')::date
            when regexp_full_match(trim(flight_date), '\d{1,2}-\d{1,2}-\d{4}')
                then try_strptime(trim(flight_date), '%m-%d-%Y')::date
        end as flight_date,
        flight_date as flight_date_raw,
        nullif(upper(trim(carrier)), '') as carrier,
        try_cast(trim(flight_number) as integer) as flight_number,
        flight_number as flight_number_raw,
        nullif(upper(trim(origin)), '') as origin,
        nullif(upper(trim(dest)), '') as dest,
        nullif(trim(passenger_name), '') as passenger_name,
        nullif(lower(trim(email)), '') as email,
        email as email_raw,
        -- North American numbers in any punctuation: 10 digits, or 11 starting with country code 1
        case
            when regexp_full_match(trim(phone), '[0-9 ()+.\-]+')
                then case
                    when length(regexp_replace(phone, '[^0-9]', '', 'g')) = 10
                        then '+1' || regexp_replace(phone, '[^0-9]', '', 'g')
                    when length(regexp_replace(phone, '[^0-9]', '', 'g')) = 11
                        and regexp_replace(phone, '[^0-9]', '', 'g') like '1%'
                        then '+' || regexp_replace(phone, '[^0-9]', '', 'g')
                end
        end as phone_e164,
        phone as phone_raw,
        try_strptime(trim(date_of_birth), '%Y-%m-%d')::date as date_of_birth,
        nullif(trim(loyalty_number), '') as loyalty_number,
        nullif(lower(trim(fare_class)), '') as fare_class,
        try_cast(trim(fare_usd) as double) as fare_usd,
        -- a retried export repeats rows verbatim: flag the 2nd and later copies within the delivery
        row_number() over (
            partition by _data_date, {{ delivered_columns | join(', ') }}
            order by _row_number
        ) > 1 as is_retry_duplicate,
        _data_date as data_date,
        _source_file,
        _batch_id,
        _row_number

    from source

)

select * from typed
