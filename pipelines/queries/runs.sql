-- What each run asked of the transactions endpoint: calls, retries, windows split at the cap and
-- account-days left incomplete, as the ledger still holds them: a day fetched again keeps only the
-- windows of its latest run, so an earlier run's figures shrink when its days are re-fetched.
SELECT
    run_id,
    min(fetched_at) AS started,
    count(*) AS transaction_calls,
    sum(attempts - 1) AS retries,
    count(*) FILTER (WHERE outcome = 'capped') AS windows_split,
    count(*) FILTER (WHERE outcome = 'flagged') AS incomplete_account_days,
    min(start_date) AS first_day,
    max(end_date) - INTERVAL 1 DAY AS last_day
FROM transaction_windows
GROUP BY run_id
ORDER BY started;
