{#
  on-run-start (dbt_project.yml): the PostgreSQL functions behind the try_* macros (cross_database.sql),
  created or replaced at the start of every dbt invocation, so a changed definition reaches the warehouse with
  the models that use it. Each reads text with PostgreSQL's own input functions and yields NULL where the cast
  raises a data exception (class 22: bad text, out of range, no such day); any other error still fails.
  Integers go through numeric and round half away from zero, as DuckDB's try_cast does ('1.5' -> 2, '1e3' ->
  1000). Instants must start with an ISO date, as on DuckDB; without an offset they are read as UTC, whatever
  the session's time zone.
  PARALLEL UNSAFE: an EXCEPTION block starts a subtransaction, which a parallel worker cannot (PostgreSQL then
  plans the model's query without workers). One transaction under an advisory lock: concurrent dbt runs (the team target runs several at once) would
  otherwise collide replacing the same function ("tuple concurrently updated").
  The embedded target (DuckDB) has try_cast itself: nothing to create.
#}
{% macro create_try_functions() %}
    {{ return(adapter.dispatch('create_try_functions', 'flight_platform')()) }}
{% endmacro %}

{% macro default__create_try_functions() %}{% endmacro %}

{% macro postgres__create_try_functions() %}
{%- set schema = try_functions_schema() -%}
do $platform$
begin
    perform pg_advisory_xact_lock(hashtext('flight_platform.create_try_functions'));
    create schema if not exists {{ schema }};

    {%- for type in ["integer", "bigint"] %}
    create or replace function {{ schema }}.try_cast_{{ type }}(value text) returns {{ type }}
    language plpgsql immutable strict parallel unsafe as $fn$
    declare
        number numeric;
    begin
        number := value::numeric;
        -- no {{ type }} for these (PostgreSQL raises feature_not_supported, not a data exception)
        if number in ('NaN', 'Infinity', '-Infinity') then
            return null;
        end if;
        return round(number)::{{ type }};
    exception when data_exception then
        return null;
    end $fn$;
    {% endfor %}

    create or replace function {{ schema }}.try_cast_double(value text) returns double precision
    language plpgsql immutable strict parallel unsafe as $fn$
    begin
        return value::double precision;
    exception when data_exception then
        return null;
    end $fn$;

    create or replace function {{ schema }}.try_cast_timestamptz(value text) returns timestamptz
    language plpgsql immutable strict parallel unsafe set timezone = 'UTC' set datestyle = 'ISO, MDY' as $fn$
    begin
        -- an ISO date first, as DuckDB reads it: not PostgreSQL's 'now', 'today', 'June 30 2013', '06/30/2013'
        if value !~* '^\s*(?:\d+-\d{1,2}-\d{1,2}(?:[^0-9]|$)|epoch\s*$|[+-]?infinity\s*$)' then
            return null;
        end if;
        return value::timestamptz;
    exception when data_exception then
        return null;
    end $fn$;

    create or replace function {{ schema }}.try_make_date(year integer, month integer, day integer) returns date
    language plpgsql immutable strict parallel unsafe as $fn$
    begin
        return make_date(year, month, day);
    exception when data_exception then
        return null;
    end $fn$;

end
$platform$
{% endmacro %}
