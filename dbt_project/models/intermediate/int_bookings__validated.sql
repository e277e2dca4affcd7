{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='data_date',
    )
}}

{%- set contract = source_contract('bookings') %}

with

staged as (

    select *
    from {{ ref('stg_bookings__bookings') }}
    where {{ in_run_range('data_date') }}
        and not is_retry_duplicate

),

flights as (

    select flight_id, flight_date, carrier, flight_number, origin
    from {{ ref('stg_flights__flights') }}

),

repeated_booking_ids as (

    -- booking ids that occur more than once in the run (retry copies are already excluded, so
    -- the occurrences differ in content or delivery); usually few, so only they are compared below
    select booking_id
    from {{ ref('stg_bookings__bookings') }}
    where {{ in_run_range('data_date') }}
        and not is_retry_duplicate
        and booking_id is not null
    group by booking_id
    having count(*) > 1

),

booking_id_deliveries as (

    -- for each repeated booking_id: how often it occurs per delivery and its first delivery in the run
    select
        booking_id,
        data_date,
        count(*) as versions_in_delivery,
        min(data_date) over (partition by booking_id) as first_data_date_in_run
    from {{ ref('stg_bookings__bookings') }}
    where booking_id in (select booking_id from repeated_booking_ids)
        and {{ in_run_range('data_date') }}
        and not is_retry_duplicate
    group by booking_id, data_date

),

{% if is_incremental() %}
run_booking_ids as (

    -- the narrow column, not the wide `staged` rows (a CTE read more than once is kept in memory)
    select booking_id
    from {{ ref('stg_bookings__bookings') }}
    where {{ in_run_range('data_date') }}
        and not is_retry_duplicate
        and booking_id is not null

),

other_deliveries as (

    -- booking ids of this run that the table already holds for a data_date outside the run
    -- range: any earlier delivery, or a later one that was accepted as valid
    select booking_id, other_data_date
    from (
        select
            booking_id,
            coalesce(
                min(data_date) filter (where data_date < {{ range_start() }}),
                min(data_date) filter (where is_valid)
            ) as other_data_date
        from {{ this }}
        where not ({{ in_run_range('data_date') }})
            and booking_id in (select booking_id from run_booking_ids)
            -- implied by the line above; lets DuckDB skip storage blocks by their min/max
            and booking_id between (select min(booking_id) from run_booking_ids)
                and (select max(booking_id) from run_booking_ids)
        group by booking_id
    ) as earlier_or_valid
    where other_data_date is not null

),
{% endif %}

checked as (

    select
        staged.*,
        flights.flight_id,

        -- the contract's required columns whose missing values are quarantined row by row (sources.yml,
        -- `quarantined: true`); a typed column is judged on its delivered text (<column>_raw), since
        -- its parsed value is also empty when the text cannot be parsed (a separate rule below)
        nullif(concat_ws(', ',
            {%- for name, column in contract['columns'].items() if column['required'] and column['quarantined'] %}
            case when {% if column['type'] == 'VARCHAR' %}staged.{{ name }}
                {%- else %}nullif(trim(staged.{{ name }}_raw), ''){% endif %} is null then '{{ name }}' end
            {{- ',' if not loop.last }}
            {%- endfor %}
        ), '') as missing_fields,

        -- the contract's email pattern; the first two branches only name the most common ways to break it
        case
            when not staged.email like '%@%' then 'email has no @'
            when staged.email like '%@%@%' then 'email has more than one @'
            when not {{ regexp_full_match('staged.email',
                source_contract_column('bookings', 'email', 'pattern')['pattern']) }}
                then 'email domain has no dot or the address contains spaces'
        end as email_problem,

        case
            when staged.phone_raw is not null and staged.phone_e164 is null then
                case
                    when {{ regexp_contains('staged.phone_raw', '[A-Za-z]') }} then 'phone contains letters'
                    else 'phone has ' || length(regexp_replace(staged.phone_raw, '[^0-9]', '', 'g'))
                        || ' digits, expected 10 (or 11 starting with country code 1)'
                end
        end as phone_problem,

        booking_id_deliveries.versions_in_delivery,
        booking_id_deliveries.first_data_date_in_run,
        {% if is_incremental() %}
        other_deliveries.other_data_date as other_delivery_data_date
        {% else %}
        cast(null as date) as other_delivery_data_date
        {% endif %}

    from staged
    left join flights
        on staged.flight_date = flights.flight_date
        and staged.carrier = flights.carrier
        and staged.flight_number = flights.flight_number
        and staged.origin = flights.origin
    left join booking_id_deliveries
        on staged.booking_id = booking_id_deliveries.booking_id
        and staged.data_date = booking_id_deliveries.data_date
    {% if is_incremental() %}
    left join other_deliveries
        on staged.booking_id = other_deliveries.booking_id
    {% endif %}

),

ruled as (

    select
        *,
        case
            when missing_fields is not null then 'missing_required_field'
            when flight_date is null then 'unparseable_flight_date'
            when email_problem is not null then 'malformed_email'
            when phone_problem is not null then 'malformed_phone'
            when flight_id is null then 'unknown_flight'
            when versions_in_delivery > 1
                or first_data_date_in_run < data_date
                or other_delivery_data_date is not null
                then 'conflicting_duplicate_booking_id'
        end as rejection_rule,
        case
            when missing_fields is not null then 'required field missing: ' || missing_fields
            when flight_date is null
                then 'flight_date matches neither YYYY-MM-DD nor MM-DD-YYYY'
            when email_problem is not null then email_problem
            when phone_problem is not null then phone_problem
            when flight_id is null then
                'no flight ' || coalesce(carrier, '?') || ' ' || coalesce(flight_number_raw, '?')
                || ' from ' || coalesce(origin, '?') || ' on ' || {{ format_date('flight_date', '%Y-%m-%d') }}
            when versions_in_delivery > 1 then
                'booking_id delivered ' || versions_in_delivery
                || ' times with different content in the same file'
            when first_data_date_in_run < data_date then
                'booking_id already delivered for data_date '
                || {{ format_date('first_data_date_in_run', '%Y-%m-%d') }}
            when other_delivery_data_date is not null then
                'booking_id already delivered for data_date '
                || {{ format_date('other_delivery_data_date', '%Y-%m-%d') }}
        end as rejection_reason

    from checked

)

select
    booking_id,
    flight_id,
    booked_on,
    flight_date,
    flight_date_raw,
    carrier,
    flight_number,
    flight_number_raw,
    origin,
    dest,
    passenger_name,
    email,
    email_raw,
    phone_e164,
    phone_raw,
    date_of_birth,
    loyalty_number,
    fare_class,
    fare_usd,
    rejection_rule is null as is_valid,
    rejection_rule,
    rejection_reason,
    data_date,
    _source_file,
    _batch_id,
    _row_number

from ruled
