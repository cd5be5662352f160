-- The latest error-free balance of each account, with the account's name and type.
SELECT b.account_id, a.name, a.type, b.currency, b."current" / 100.0 AS "current",
       b.available / 100.0 AS available, b.observed_at
FROM balances b
LEFT JOIN (
    SELECT * FROM external_accounts
    QUALIFY row_number() OVER (PARTITION BY account_id ORDER BY observed_at DESC) = 1
) a USING (account_id)
WHERE b.error IS NULL
QUALIFY row_number() OVER (PARTITION BY b.account_id ORDER BY b.observed_at DESC) = 1
ORDER BY b.account_id;
