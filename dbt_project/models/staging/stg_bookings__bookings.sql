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

-- read three times below; DuckDB would otherwise keep all of it in memory (a CTE read more than once
-- is materialized), which ran out of memory at 50 M rows
source as not materialized (

    {{ select_current_batch(source('raw', 'bookings'), in_run_range('_data_date')) }}

),

-- A retried export repeats rows verbatim. Exact copies share their booking_id, so only rows
-- whose booking_id occurs more than once in a delivery need the full comparison.
repeated_booking_ids as (

    select _data_date, booking_id
    from source
    group by _data_date, booking_id
    having count(*) > 1

),

retry_copies as (

    -- the 2nd and later copies of a row whose delivered columns are all equal
    select _data_date, _source_file, _row_number
    from (
        select
            source._data_date,
            source._source_file,
            source._row_number,
            row_number() over (
                partition by
                    source._data_date,
                    {%- for column in delivered_columns %}
                    source.{{ column }}{{ ',' if not loop.last }}
                    {%- endfor %}
                order by source._source_file, source._row_number
            ) as copy_number
        from source
        where exists (
            select 1
            from repeated_booking_ids
            where source._data_date = repeated_booking_ids._data_date
                and {{ equal_or_both_null('source.booking_id', 'repeated_booking_ids.booking_id') }}
        )
    ) as copies
    where copy_number > 1

),

prepared as (

    select
        source.*,
        trim(source.flight_date) as flight_date_trimmed,
        -- the phone without the punctuation valid numbers come with: spaces ( ) + . -
        replace(replace(replace(replace(replace(replace(
            source.phone, ' ', ''), '(', ''), ')', ''), '+', ''), '.', ''), '-', '') as phone_digits,
        retry_copies._row_number is not null as is_retry_duplicate

    from source
    left join retry_copies
        on source._data_date = retry_copies._data_date
        and source._source_file = retry_copies._source_file
        and source._row_number = retry_copies._row_number

)

select
    nullif(trim(booking_id), '') as booking_id,
    {{ try_strptime_date('trim(booked_on)', '%Y-%m-%d') }} as booked_on,
    -- documented source defect: YYYY-MM-DD until 2013-06-30, MM-DD-YYYY from 2013-07-01
    case
        when {{ regexp_full_match('flight_date_trimmed', '\d{4}-\d{1,2}-\d{1,2}') }}
            then {{ try_strptime_date('flight_date_trimmed', '%Y-%m-%d') }}
        when {{ regexp_full_match('flight_date_trimmed', '\d{1,2}-\d{1,2}-\d{4}') }}
            then {{ try_strptime_date('flight_date_trimmed', '%m-%d-%Y') }}
    end as flight_date,
    flight_date as flight_date_raw,
    nullif(upper(trim(carrier)), '') as carrier,
    {{ try_cast('trim(flight_number)', 'integer') }} as flight_number,
    flight_number as flight_number_raw,
    nullif(upper(trim(origin)), '') as origin,
    nullif(upper(trim(dest)), '') as dest,
    nullif(trim(passenger_name), '') as passenger_name,
    nullif(lower(trim(email)), '') as email,
    email as email_raw,
    -- North American number: 10 digits, or 11 starting with country code 1; else NULL
    case
        when {{ regexp_full_match('phone_digits', '[0-9]{10}') }} then '+1' || phone_digits
        when {{ regexp_full_match('phone_digits', '1[0-9]{10}') }} then '+' || phone_digits
    end as phone_e164,
    phone as phone_raw,
    {{ try_strptime_date('trim(date_of_birth)', '%Y-%m-%d') }} as date_of_birth,
    nullif(trim(loyalty_number), '') as loyalty_number,
    nullif(lower(trim(fare_class)), '') as fare_class,
    {{ try_cast('trim(fare_usd)', 'double precision') }} as fare_usd,
    is_retry_duplicate,
    _data_date as data_date,
    _source_file,
    _batch_id,
    _row_number

from prepared
