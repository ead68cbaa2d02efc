# Reference fit of the theophylline data (R datasets::Theoph, Boeckmann, Sheiner & Beal 1994) by nlme
# (Pinheiro & Bates 2000): 1-compartment oral model, log-normal random effects on CL, V and KA (diagonal),
# additive residual error, maximum likelihood. Writes the data set (NONMEM format) and nlme's
# estimates to the paths given. Run: Rscript benchmarks/nlme_theoph.R tests/data/theoph.csv tests/data/theoph_nlme.json
args <- commandArgs(trailingOnly = TRUE)
suppressMessages(library(nlme))
d <- as.data.frame(datasets::Theoph)
d$Subject <- as.integer(as.character(d$Subject))
d$AMT <- d$Dose * d$Wt                       # mg (Dose is mg/kg)
d <- d[order(d$Subject, d$Time), ]
# NONMEM data: a dose record at time 0 per subject, then the concentration records
dose <- d[!duplicated(d$Subject), ]
nm <- rbind(data.frame(ID = dose$Subject, TIME = 0, AMT = dose$AMT, EVID = 1, DV = ".", WT = dose$Wt, CMT = 1),
            data.frame(ID = d$Subject, TIME = d$Time, AMT = 0, EVID = 0, DV = sprintf("%.2f", d$conc), WT = d$Wt, CMT = 2))
nm <- nm[order(nm$ID, nm$TIME, -nm$EVID), ]
write.csv(nm, args[1], row.names = FALSE, quote = FALSE)
# the concentration at time 0 (pre-dose) is an observation in NONMEM's order too
f1 <- function(amt, t, lcl, lv, lka) {
  cl <- exp(lcl); v <- exp(lv); ka <- exp(lka); k <- cl / v
  amt * ka / (v * (ka - k)) * (exp(-k * t) - exp(-ka * t))
}
t0 <- proc.time()[["elapsed"]]
fit <- nlme(conc ~ f1(AMT, Time, lcl, lv, lka), data = d, fixed = lcl + lv + lka ~ 1,
            random = pdDiag(lcl + lv + lka ~ 1), groups = ~Subject,
            start = c(lcl = log(3), lv = log(30), lka = log(1.5)), method = "ML",
            control = nlmeControl(maxIter = 200, msMaxIter = 200, pnlsTol = 1e-6, tolerance = 1e-8))
secs <- proc.time()[["elapsed"]] - t0
fe <- fixef(fit)
om <- as.numeric(VarCorr(fit)[1:3, "Variance"])
se <- sqrt(diag(vcov(fit)))
num <- function(x) sprintf("%.12g", x)
json <- paste0("{",
  "\"software\": \"R ", getRversion(), " nlme ", packageVersion("nlme"), "\", ",
  "\"method\": \"ML (Lindstrom-Bates)\", ",
  "\"m2ll\": ", num(-2 * as.numeric(logLik(fit))), ", \"n_obs\": ", nrow(d), ", \"seconds\": ", num(secs), ", ",
  "\"CL\": ", num(exp(fe[["lcl"]])), ", \"V\": ", num(exp(fe[["lv"]])), ", \"KA\": ", num(exp(fe[["lka"]])), ", ",
  "\"se_log\": [", paste(num(se), collapse = ", "), "], ",
  "\"omega\": [", paste(num(om), collapse = ", "), "], \"sigma2\": ", num(fit$sigma^2), "}")
writeLines(json, args[2])
