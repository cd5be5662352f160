-- Account-days that could not be proven complete: the day alone returned the 500-row cap.
SELECT account_id, start_date AS day, row_count, fetched_at, run_id
FROM transaction_windows
WHERE outcome = 'flagged'
ORDER BY day, account_id;
